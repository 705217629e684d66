import { Link } from '../router';
import { PageHeader } from '../components/ui';

export function ForbiddenPage() {
  return (
    <div class="card narrow" role="alert" data-testid="forbidden">
      <PageHeader title="Admins only" />
      <p>
        This page is for StreamSpace administrators, and your account is not one. Ask an admin to give you the admin
        role if you need it.
      </p>
      <Link href="/" class="btn btn-primary">
        Back to the catalog
      </Link>
    </div>
  );
}

export function NotFoundPage() {
  return (
    <div class="card narrow" role="alert">
      <PageHeader title="Page not found" />
      <p class="muted">There is nothing at {location.pathname}.</p>
      <Link href="/" class="btn btn-primary">
        Back to the catalog
      </Link>
    </div>
  );
}
