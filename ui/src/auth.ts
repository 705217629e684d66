// Who is signed in, for the pages of a signed-in user. `App` provides it;
// pages and the layout read it with `useAuth`. Its own module, so they need
// not import app.tsx, which imports them.

import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { User } from './api';

type Auth = { user: User; logout: (opts?: { everywhere?: boolean }) => Promise<void> };
export const AuthContext = createContext<Auth | null>(null);

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error('useAuth outside a logged-in page');
  return auth;
}
