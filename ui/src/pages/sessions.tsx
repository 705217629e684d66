import { useAuth } from '../auth';
import { SessionTable, useSessionList } from '../components/session-table';
import { PageHeader } from '../components/ui';
import { Link } from '../router';
import { SharedWithMe } from './viewer/share';

export function MySessionsPage() {
  const { user } = useAuth();
  const list = useSessionList({ ownerId: user.id });
  return (
    <>
      <PageHeader
        title="My sessions"
        subtitle="Your running and hibernated apps. They keep running when you close the tab."
        actions={
          <Link href="/" class="btn btn-primary">
            Launch an app
          </Link>
        }
      />
      <SessionTable
        {...list}
        update={list.upsert}
        empty={
          <p class="muted">
            Nothing running. <Link href="/">Launch an app from the catalog</Link>.
          </p>
        }
      />
      <SharedWithMe />
    </>
  );
}
