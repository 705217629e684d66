// Hooks the pages share.

import { useEffect, useState } from 'preact/hooks';
import { errorMessage } from './api';

export type Resource<T> = {
  /** `null` until the first load succeeds. */
  data: T | null;
  /** Why the last load failed; `null` once one succeeds. */
  error: string | null;
  /** Loads again: for a retry button, a `resync` event, a poll. */
  reload: () => void;
  /** Changes the data in place, e.g. with an event or an action's answer. */
  setData: (update: T | null | ((prev: T | null) => T | null)) => void;
};

/**
 * Something a page loads from the API, typically a list: loaded when the page
 * opens and whenever `deps` change. A failed load keeps the data loaded
 * before and sets `error`; a load that succeeds clears it.
 * `clearErrorOnReload` hides the error as soon as a load starts instead.
 */
export function useResource<T>(
  load: () => Promise<T>,
  deps: unknown[] = [],
  { clearErrorOnReload = false } = {},
): Resource<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const reload = () => {
    if (clearErrorOnReload) setError(null);
    load().then(
      (loaded) => {
        setData(loaded);
        setError(null);
      },
      (err) => setError(errorMessage(err)),
    );
  };
  useEffect(reload, deps);
  return { data, error, reload, setData };
}
