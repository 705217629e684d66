// The clipboard panel: text the session copied, to copy to this computer,
// and text to send to the session.

import { useState } from 'preact/hooks';
import { Button, CopyButton } from '../../components/ui';
import { IconClose } from '../../components/icons';

type Props = {
  open: boolean;
  onClose: () => void;
  /** What the session last copied. */
  received: string;
  connected: boolean;
  onSend: (text: string) => void;
};

/** Rendered even while closed (as nothing), so text typed to send survives closing the panel. */
export function ClipboardPanel({ open, onClose, received, connected, onSend }: Props) {
  const [outgoing, setOutgoing] = useState('');
  if (!open) return null;
  return (
    <aside id="clipboard-panel" class="clipboard-panel" aria-label="Clipboard">
      <div class="panel-head">
        <h2>Clipboard</h2>
        <button type="button" class="icon-btn" aria-label="Close clipboard" onClick={onClose}>
          <IconClose />
        </button>
      </div>
      <div class="field">
        <label for="clip-in">From the session</label>
        <textarea id="clip-in" readOnly rows={5} value={received} placeholder="Text copied in the session appears here." />
        <div class="btn-row">
          <CopyButton text={received} label="Copy to this computer" />
        </div>
      </div>
      <form
        class="field"
        onSubmit={(e) => {
          e.preventDefault();
          onSend(outgoing);
        }}
      >
        <label for="clip-out">Send to the session</label>
        <textarea
          id="clip-out"
          rows={5}
          value={outgoing}
          onInput={(e) => setOutgoing(e.currentTarget.value)}
          placeholder="Paste text here, send it, then paste inside the session."
        />
        <div class="btn-row">
          <Button type="submit" variant="primary" small disabled={!connected || !outgoing}>
            Send to session
          </Button>
        </div>
      </form>
    </aside>
  );
}
