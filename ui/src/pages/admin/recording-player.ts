// Playback of a session recording (docs/RECORDING.md): the recorded server
// bytes are fed, at their recorded times, to noVNC's RFB through a fake
// channel standing in for the WebSocket. noVNC decodes them exactly as the
// live viewer did; what it sends back goes nowhere. Seeking forward feeds
// the bytes up to the new time at once; seeking back starts over (RFB's
// decoders carry state from the first byte), which is fast since nothing
// waits.

import RFB from '@novnc/novnc';

export type Chunk = { at: number; data: Uint8Array };
export type Recording = { startedMs: number; chunks: Chunk[]; durationMs: number };

const MAGIC = [0x53, 0x53, 0x52, 0x45, 0x43, 0, 0]; // "SSREC\0\0", then the version

/** Parses a recording file; a truncated last chunk is left out. */
export function parseRecording(buffer: ArrayBuffer): Recording {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  if (bytes.length < 16 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new Error('not a StreamSpace recording');
  }
  if (bytes[7] !== 1) throw new Error(`recording version ${bytes[7]} is not supported`);
  const startedMs = Number(view.getBigUint64(8));
  const chunks: Chunk[] = [];
  let at = 16;
  while (at + 8 <= bytes.length) {
    const time = view.getUint32(at);
    const len = view.getUint32(at + 4);
    if (at + 8 + len > bytes.length) break;
    chunks.push({ at: time, data: bytes.subarray(at + 8, at + 8 + len) });
    at += 8 + len;
  }
  return { startedMs, chunks, durationMs: chunks.length ? chunks[chunks.length - 1].at : 0 };
}

/** The WebSocket-shaped object noVNC attaches to (its Websock checks these properties). */
class ReplayChannel {
  binaryType = 'arraybuffer';
  protocol = 'binary';
  // Open from the start: noVNC then begins the handshake at once.
  readyState = 1;
  onopen: ((e: Event) => void) | null = null;
  onmessage: ((e: { data: ArrayBuffer }) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  onclose: ((e: { code: number; reason: string; wasClean: boolean }) => void) | null = null;

  /** What the player's RFB answers the recorded server with: dropped. */
  send(_data: unknown) {}

  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    // Later, as a WebSocket's close event comes: noVNC arms its disconnect
    // timer after asking, and a close event before that never clears it.
    setTimeout(() => this.onclose?.({ code: 1000, reason: '', wasClean: true }));
  }

  push(data: Uint8Array) {
    if (this.readyState !== 1 || data.length === 0) return;
    this.onmessage?.({ data: data.slice().buffer });
  }
}

export type PlayerState = { position: number; playing: boolean; speed: number };

/** Plays a recording into `target`; `onChange` hears position and play state. */
export class Player {
  private rfb: RFB | null = null;
  private channel: ReplayChannel | null = null;
  /** Chunks already fed to the current RFB. */
  private fed = 0;
  private position = 0;
  private playing = false;
  private speed = 1;
  private timer: ReturnType<typeof setInterval> | undefined;
  private last = 0;

  constructor(
    private readonly target: HTMLElement,
    private readonly recording: Recording,
    private readonly onChange: (s: PlayerState) => void,
  ) {
    this.restart();
    this.feedTo(0);
  }

  play() {
    if (this.position >= this.recording.durationMs) this.seek(0);
    this.playing = true;
    this.last = performance.now();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 40);
    this.emit();
  }

  pause() {
    this.playing = false;
    clearInterval(this.timer);
    this.emit();
  }

  setSpeed(speed: number) {
    this.speed = speed;
    this.emit();
  }

  /** Shows the screen as it was `ms` after the start. */
  seek(ms: number) {
    const to = Math.max(0, Math.min(ms, this.recording.durationMs));
    if (to < this.position) this.restart();
    this.position = to;
    this.feedTo(to);
    this.emit();
  }

  destroy() {
    clearInterval(this.timer);
    this.stopRfb();
  }

  private tick() {
    const now = performance.now();
    const next = this.position + (now - this.last) * this.speed;
    this.last = now;
    this.position = Math.min(next, this.recording.durationMs);
    this.feedTo(this.position);
    if (this.position >= this.recording.durationMs) this.pause();
    else this.emit();
  }

  private feedTo(ms: number) {
    const { chunks } = this.recording;
    while (this.fed < chunks.length && chunks[this.fed].at <= ms) {
      this.channel?.push(chunks[this.fed].data);
      this.fed += 1;
    }
  }

  /** A fresh RFB on a fresh channel, before the first recorded byte. */
  private restart() {
    this.stopRfb();
    const channel = new ReplayChannel();
    const rfb = new RFB(this.target, channel as unknown as WebSocket, { shared: true });
    rfb.viewOnly = true;
    rfb.scaleViewport = true;
    rfb.background = '#0b0d12';
    // A recorded VNC password challenge: the recorded server accepts
    // whatever noVNC answers, since the answer goes nowhere.
    rfb.addEventListener('credentialsrequired', () =>
      rfb.sendCredentials({ username: 'replay', password: 'replay', target: '' }),
    );
    this.rfb = rfb;
    this.channel = channel;
    this.fed = 0;
    this.position = 0;
  }

  private stopRfb() {
    if (!this.rfb) return;
    try {
      this.rfb.disconnect();
    } catch {
      // Already disconnected.
    }
    this.rfb = null;
    this.channel = null;
  }

  private emit() {
    this.onChange({ position: this.position, playing: this.playing, speed: this.speed });
  }
}
