// Hooks the pages share.

import { useEffect, useRef, useState } from 'preact/hooks';
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
 * before and sets `error`; a load that succeeds clears it. An answer older
 * than one already shown, or than the current `deps`, is dropped.
 * `clearErrorOnReload` hides the error as soon as a load starts instead.
 */
export function useResource<T>(
  load: () => Promise<T>,
  deps: unknown[] = [],
  { clearErrorOnReload = false } = {},
): Resource<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  // Loads are numbered. An answer counts unless a later load has answered
  // already, or `deps` changed after it started (a filter toggled): a slow
  // answer must not put back an older list, yet under overlapping polls each
  // newer answer still lands.
  const started = useRef(0);
  const answered = useRef(0);
  const sinceDeps = useRef(1);
  const reload = () => {
    const mine = ++started.current;
    const counts = () => mine >= sinceDeps.current && mine > answered.current;
    if (clearErrorOnReload) setError(null);
    load().then(
      (loaded) => {
        if (!counts()) return;
        answered.current = mine;
        setData(loaded);
        setError(null);
      },
      (err) => {
        if (!counts()) return;
        answered.current = mine;
        setError(errorMessage(err));
      },
    );
  };
  useEffect(() => {
    sinceDeps.current = started.current + 1;
    reload();
  }, deps);
  return { data, error, reload, setData };
}
