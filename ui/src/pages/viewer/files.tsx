// File transfer (docs/FILES.md): the Files panel lists the session's files
// folder (the template's `desktop.files_folder`, ~/Downloads by default),
// downloads from it and uploads into it; files dropped anywhere on the
// viewer are uploaded there too. What it offers follows the template's
// `desktop.file_transfer` policy, which the server enforces.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { RefObject } from 'preact';
import { api, ApiError, errorMessage, type FileListing, type Session } from '../../api';
import { Button } from '../../components/ui';
import { IconClose } from '../../components/icons';
import { bytes } from '../../format';

/** What the template allows, from the session's desktop policy. */
export function transferPolicy(session: Session) {
  const policy = session.desktop.file_transfer;
  return {
    upload: policy === 'both' || policy === 'upload',
    download: policy === 'both' || policy === 'download',
  };
}

/** One upload: running (with its progress), done, or failed with a reason. */
export type Upload = { id: number; name: string; loaded: number; total: number; error?: string; done: boolean };

let nextUpload = 1;

/** Uploads into the files folder, with progress; `onDone` runs after each that succeeds. */
export function useUploads(sessionId: string, onDone: () => void) {
  const [uploads, setUploads] = useState<Upload[]>([]);
  const patch = (id: number, change: Partial<Upload>) =>
    setUploads((all) => all.map((u) => (u.id === id ? { ...u, ...change } : u)));

  const start = (files: Iterable<File>, dir = '') => {
    for (const file of files) {
      const id = nextUpload++;
      setUploads((all) => [...all.slice(-9), { id, name: file.name, loaded: 0, total: file.size, done: false }]);
      const path = dir ? `${dir}/${file.name}` : file.name;
      send(sessionId, path, file, (loaded) => patch(id, { loaded })).then(
        () => {
          patch(id, { done: true, loaded: file.size });
          onDone();
        },
        (err) => patch(id, { done: true, error: errorMessage(err) }),
      );
    }
  };
  return { uploads, start };
}

/** PUT with the file as the body (XHR, for upload progress). */
function send(sessionId: string, path: string, file: File, progress: (loaded: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', api.fileUrl(sessionId, path));
    xhr.withCredentials = true;
    xhr.upload.onprogress = (e) => progress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      let message = `The server answered ${xhr.status}`;
      try {
        message = (JSON.parse(xhr.responseText) as { error?: string }).error ?? message;
      } catch {
        // Not JSON (a proxy's page): keep the status.
      }
      reject(new ApiError(xhr.status, message));
    };
    xhr.onerror = () => reject(new ApiError(0, 'The upload broke off: check your connection and try again.'));
    xhr.send(file);
  });
}

/** Files dragged over `target` are shown as droppable and, dropped, handed to `onFiles`. */
export function useFileDrop(target: RefObject<HTMLElement | null>, enabled: boolean, onFiles: (files: File[]) => void) {
  const [over, setOver] = useState(false);
  const latest = useRef(onFiles);
  latest.current = onFiles;
  useEffect(() => {
    const el = target.current;
    if (!el || !enabled) return;
    const carriesFiles = (e: DragEvent) => !!e.dataTransfer && Array.from(e.dataTransfer.types).includes('Files');
    const onOver = (e: DragEvent) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
      setOver(true);
    };
    const onLeave = (e: DragEvent) => {
      if (!el.contains(e.relatedTarget as Node | null)) setOver(false);
    };
    const onDrop = (e: DragEvent) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      setOver(false);
      latest.current(Array.from(e.dataTransfer?.files ?? []));
    };
    el.addEventListener('dragover', onOver);
    el.addEventListener('dragleave', onLeave);
    el.addEventListener('drop', onDrop);
    return () => {
      el.removeEventListener('dragover', onOver);
      el.removeEventListener('dragleave', onLeave);
      el.removeEventListener('drop', onDrop);
    };
  }, [target.current, enabled]);
  return over;
}

type Props = {
  open: boolean;
  onClose: () => void;
  session: Session;
  uploads: Upload[];
  onUpload: (files: File[], dir: string) => void;
  /** Bumped after each upload, so the listing shows it. */
  refresh: number;
};

export function FilesPanel({ open, onClose, session, uploads, onUpload, refresh }: Props) {
  const [dir, setDir] = useState('');
  const [listing, setListing] = useState<FileListing | null>(null);
  const [error, setError] = useState<string | null>(null);
  const input = useRef<HTMLInputElement>(null);
  const policy = transferPolicy(session);

  const load = () =>
    api.files(session.id, dir).then(
      (l) => {
        setListing(l);
        setError(null);
      },
      (err) => setError(errorMessage(err)),
    );
  useEffect(() => {
    if (open && session.phase === 'Running') load();
  }, [open, dir, refresh, session.phase]);

  if (!open) return null;
  const folder = listing?.folder ?? 'Downloads';
  return (
    <aside id="files-panel" class="clipboard-panel files-panel" aria-label="Files">
      <div class="panel-head">
        <h2>Files</h2>
        <button type="button" class="icon-btn" aria-label="Close files" onClick={onClose}>
          <IconClose />
        </button>
      </div>
      <p class="muted small">
        In <code>~/{folder}</code> of the session.
        {policy.upload && ' Drop files on the desktop to upload them here.'}
      </p>
      <nav class="files-path" aria-label="Folder">
        <button type="button" class="link-btn" onClick={() => setDir('')}>
          {folder}
        </button>
        {dir.split('/').filter(Boolean).map((part, i, parts) => (
          <span key={i}>
            {' / '}
            <button type="button" class="link-btn" onClick={() => setDir(parts.slice(0, i + 1).join('/'))}>
              {part}
            </button>
          </span>
        ))}
      </nav>
      {error && (
        <p class="text-error" role="alert">
          {error}
        </p>
      )}
      <ul class="files-list" data-testid="files-list">
        {listing?.entries.length === 0 && <li class="muted">Nothing here yet.</li>}
        {listing?.entries.map((entry) => {
          const path = dir ? `${dir}/${entry.name}` : entry.name;
          return (
            <li key={entry.name} data-file={entry.name}>
              {entry.kind === 'directory' ? (
                <button type="button" class="link-btn" onClick={() => setDir(path)}>
                  {entry.name}/
                </button>
              ) : entry.kind === 'file' && policy.download ? (
                <a href={api.fileUrl(session.id, path)} download={entry.name} title={`Download ${entry.name}`}>
                  {entry.name}
                </a>
              ) : (
                <span title={entry.kind === 'symlink' ? 'A link: not followed' : undefined}>{entry.name}</span>
              )}
              {entry.kind === 'file' && <span class="muted small">{bytes(entry.size)}</span>}
              {entry.kind === 'symlink' && <span class="muted small">link</span>}
            </li>
          );
        })}
        {listing?.truncated && <li class="muted">More files than shown.</li>}
      </ul>
      {policy.upload && (
        <div class="btn-row">
          <input
            ref={input}
            type="file"
            multiple
            hidden
            aria-label="Files to upload"
            onChange={(e) => {
              onUpload(Array.from(e.currentTarget.files ?? []), dir);
              e.currentTarget.value = '';
            }}
          />
          <Button variant="primary" small onClick={() => input.current?.click()} disabled={session.phase !== 'Running'}>
            Upload files
          </Button>
        </div>
      )}
      {uploads.length > 0 && (
        <ul class="files-uploads" aria-label="Uploads">
          {uploads.map((u) => (
            <li key={u.id} data-upload={u.name} data-state={u.error ? 'failed' : u.done ? 'done' : 'sending'}>
              <span>{u.name}</span>
              {u.error ? (
                <span class="text-error">{u.error}</span>
              ) : (
                <progress max={u.total || 1} value={u.done ? u.total || 1 : u.loaded} />
              )}
            </li>
          ))}
        </ul>
      )}
    </aside>
  );
}
