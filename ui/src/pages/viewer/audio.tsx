// The session's sound (docs/AUDIO.md): the `/audio/{id}` WebSocket carries
// Opus in RTP, each packet after a 16-bit big-endian length (RFC 4571),
// split across WebSocket frames anyhow. WebCodecs decodes each packet and
// Web Audio plays it a little ahead of its clock: just enough lead to absorb
// network and decoding jitter. When the lead grows past that (the session's
// clock and the sound card's drift apart) silent frames are dropped, and far
// past it any frame, since sound that lags the picture is worse than a click.
// A toolbar button mutes, and a slider sets the volume (kept in localStorage).

import { useEffect, useRef, useState } from 'preact/hooks';

export type AudioState =
  /** The session has no audio port, or the viewer is not connected. */
  | 'off'
  | 'connecting'
  | 'playing'
  /** The browser holds sound back until the user clicks or types in the page. */
  | 'blocked'
  /** No WebCodecs Opus decoder here (or not a secure context). */
  | 'unsupported'
  /** The stream dropped; retried shortly. */
  | 'lost';

const SAMPLE_RATE = 48_000;
const CHANNELS = 2;
/** How far ahead of the audio clock sound is scheduled after a gap. */
const LEAD_S = 0.04;
/** Above this lead (the two clocks drift, bursts pile up) silent frames are dropped: no one hears it. */
const SLACK_S = 0.06;
/** Above this lead any frame is dropped until playback catches up: a click beats lagging the picture. */
const MAX_LEAD_S = 0.15;
/** A decoded frame whose samples all stay below this is silence. */
const SILENT = 1e-3;
/** The most bytes an RTP packet of ours may be (10 ms of Opus is far less). */
const MAX_PACKET = 4096;
/** Retries come quickly at first (the sound starts a moment after the screen), then every 2 s. */
const QUICK_RETRY_MS = 500;
const QUICK_RETRIES = 6;
const RETRY_MS = 2_000;
const VOLUME_KEY = 'streamspace.viewer.volume';
const MUTED_KEY = 'streamspace.viewer.muted';

/** Reassembles RFC 4571 packets (a 16-bit big-endian length, then the packet) from arbitrary chunks. */
export class PacketFramer {
  private buf = new Uint8Array(0);

  /** Appends a chunk and returns the packets it completed; throws on a length no sender of ours would write. */
  push(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf);
    joined.set(chunk, this.buf.length);
    const packets: Uint8Array[] = [];
    let at = 0;
    while (joined.length - at >= 2) {
      const len = (joined[at] << 8) | joined[at + 1];
      if (len < 12 || len > MAX_PACKET) throw new Error(`not an RTP stream (packet length ${len})`);
      if (joined.length - at - 2 < len) break;
      packets.push(joined.subarray(at + 2, at + 2 + len));
      at += 2 + len;
    }
    this.buf = joined.slice(at);
    return packets;
  }
}

/** The Opus payload of an RTP packet and its timestamp (48 kHz ticks), past CSRCs, extension and padding. */
export function rtpPayload(p: Uint8Array): { timestamp: number; payload: Uint8Array } | null {
  if (p.length < 12 || p[0] >> 6 !== 2) return null;
  let start = 12 + (p[0] & 0x0f) * 4;
  if (p[0] & 0x10) {
    if (p.length < start + 4) return null;
    start += 4 + ((p[start + 2] << 8) | p[start + 3]) * 4;
  }
  const end = p[0] & 0x20 ? p.length - p[p.length - 1] : p.length;
  if (start >= end) return null;
  const timestamp = ((p[4] << 24) | (p[5] << 16) | (p[6] << 8) | p[7]) >>> 0;
  return { timestamp, payload: p.subarray(start, end) };
}

function audioUrl(id: string): string {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/audio/${encodeURIComponent(id)}`;
}

/** One connection: WebSocket → framer → AudioDecoder → scheduled buffers → gain → speakers. */
class Player {
  private ws: WebSocket;
  private framer = new PacketFramer();
  private decoder: AudioDecoder;
  private next = 0;
  private closed = false;

  constructor(
    id: string,
    private ctx: AudioContext,
    private out: AudioNode,
    onState: (s: AudioState) => void,
  ) {
    this.decoder = new AudioDecoder({
      output: (data) => this.play(data),
      error: () => this.ws.close(),
    });
    this.decoder.configure({ codec: 'opus', sampleRate: SAMPLE_RATE, numberOfChannels: CHANNELS });
    this.ws = new WebSocket(audioUrl(id), ['binary']);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => onState(ctx.state === 'running' ? 'playing' : 'blocked');
    this.ws.onmessage = (e) => this.receive(new Uint8Array(e.data as ArrayBuffer));
    this.ws.onclose = () => {
      if (!this.closed) onState('lost');
      this.close();
    };
  }

  private receive(chunk: Uint8Array) {
    let packets: Uint8Array[];
    try {
      packets = this.framer.push(chunk);
    } catch {
      this.ws.close();
      return;
    }
    for (const p of packets) {
      const rtp = rtpPayload(p);
      if (!rtp || this.decoder.state !== 'configured') continue;
      // Every packet stands alone (Opus has no inter-frame dependencies a decoder needs to start).
      const timestamp = Math.round((rtp.timestamp * 1e6) / SAMPLE_RATE);
      this.decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp, data: rtp.payload }));
    }
  }

  private play(data: AudioData) {
    const frames = data.numberOfFrames;
    const now = this.ctx.currentTime;
    const lead = this.next - now;
    if (this.ctx.state !== 'running' || lead > MAX_LEAD_S) {
      data.close();
      return;
    }
    const buffer = this.ctx.createBuffer(data.numberOfChannels, frames, data.sampleRate);
    let peak = 0;
    for (let ch = 0; ch < data.numberOfChannels; ch++) {
      const plane = new Float32Array(frames);
      data.copyTo(plane, { planeIndex: ch, format: 'f32-planar' });
      for (const v of plane) peak = Math.max(peak, Math.abs(v));
      buffer.copyToChannel(plane, ch);
    }
    data.close();
    if (lead > SLACK_S && peak < SILENT) return;
    if (lead < 0.005) this.next = now + LEAD_S;
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.out);
    source.start(this.next);
    this.next += buffer.duration;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.ws.close();
    if (this.decoder.state !== 'closed') this.decoder.close();
  }
}

async function opusDecodes(): Promise<boolean> {
  if (typeof AudioDecoder === 'undefined' || typeof AudioContext === 'undefined') return false;
  try {
    const config = { codec: 'opus', sampleRate: SAMPLE_RATE, numberOfChannels: CHANNELS };
    return (await AudioDecoder.isConfigSupported(config)).supported === true;
  } catch {
    return false;
  }
}

export type SessionAudio = {
  state: AudioState;
  muted: boolean;
  volume: number;
  setMuted: (m: boolean) => void;
  setVolume: (v: number) => void;
};

/** Plays the session's sound while `active` (the session has an audio port and the desktop is connected). */
export function useSessionAudio(id: string, active: boolean): SessionAudio {
  const [state, setState] = useState<AudioState>('off');
  const [muted, setMuted] = useState(localStorage.getItem(MUTED_KEY) === 'true');
  const [volume, setVolume] = useState(() => {
    const v = Number(localStorage.getItem(VOLUME_KEY) ?? '0.8');
    return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0.8;
  });
  const [attempt, setAttempt] = useState(0);
  const failures = useRef(0);
  const gain = useRef<GainNode | null>(null);

  useEffect(() => {
    if (gain.current) gain.current.gain.value = muted ? 0 : volume;
    localStorage.setItem(MUTED_KEY, String(muted));
    localStorage.setItem(VOLUME_KEY, String(volume));
  }, [muted, volume]);

  useEffect(() => {
    if (!active) {
      setState('off');
      return;
    }
    let player: Player | null = null;
    let ctx: AudioContext | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    // Autoplay rules: a context made before any click stays suspended until one.
    const unblock = () => {
      if (!ctx || ctx.state === 'running') return;
      ctx.resume().then(() => !stopped && setState((s) => (s === 'blocked' ? 'playing' : s)));
    };
    setState('connecting');
    opusDecodes().then((ok) => {
      if (stopped) return;
      if (!ok) return setState('unsupported');
      ctx = new AudioContext({ latencyHint: 'interactive', sampleRate: SAMPLE_RATE });
      const node = ctx.createGain();
      node.gain.value = muted ? 0 : volume;
      node.connect(ctx.destination);
      gain.current = node;
      player = new Player(id, ctx, node, (s) => {
        if (stopped) return;
        setState(s);
        if (s === 'playing' || s === 'blocked') failures.current = 0;
        if (s !== 'lost') return;
        const wait = failures.current++ < QUICK_RETRIES ? QUICK_RETRY_MS : RETRY_MS;
        timer = setTimeout(() => setAttempt((a) => a + 1), wait);
      });
      unblock();
    });
    document.addEventListener('pointerdown', unblock, true);
    document.addEventListener('keydown', unblock, true);
    return () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('pointerdown', unblock, true);
      document.removeEventListener('keydown', unblock, true);
      player?.close();
      ctx?.close();
      gain.current = null;
    };
  }, [id, active, attempt]);

  return { state, muted, volume, setMuted, setVolume };
}

const HINT: Record<AudioState, string> = {
  off: 'Sound',
  connecting: 'Sound: connecting…',
  playing: 'Sound: playing',
  blocked: 'Sound: click anywhere in the page to let the browser play it',
  unsupported: 'Sound: this browser cannot decode Opus (WebCodecs needs a recent browser and HTTPS)',
  lost: 'Sound: reconnecting…',
};

/** The toolbar's mute button and volume slider. */
export function AudioControl({ audio }: { audio: SessionAudio }) {
  const { state, muted, volume } = audio;
  const silent = muted || volume === 0 || state !== 'playing';
  const label = muted ? 'Unmute' : 'Mute';
  return (
    <div
      style={{ display: 'inline-flex', alignItems: 'center', gap: '4px' }}
      data-testid="audio" data-audio-state={state} title={HINT[state]}>
      <button
        type="button"
        class="tool"
        aria-pressed={muted}
        disabled={state === 'unsupported'}
        onClick={() => audio.setMuted(!muted)}
        title={`${label} (${HINT[state]})`}
      >
        <SpeakerIcon silent={silent} />
        <span class="tool-label">{label}</span>
      </button>
      <input
        type="range"
        min={0}
        max={1}
        step={0.05}
        value={volume}
        disabled={state === 'unsupported'}
        aria-label="Volume"
        style={{ width: '80px' }}
        onInput={(e) => audio.setVolume(Number((e.target as HTMLInputElement).value))}
      />
    </div>
  );
}

function SpeakerIcon({ silent }: { silent: boolean }) {
  return (
    <svg
      width={18}
      height={18}
      viewBox="0 0 24 24"
      fill="none"
      stroke="currentColor"
      stroke-width="2"
      stroke-linecap="round"
      stroke-linejoin="round"
      aria-hidden="true"
      focusable="false"
    >
      <path d="M4 9v6h4l5 4V5L8 9H4z" />
      {silent ? <path d="M17 9l5 6M22 9l-5 6" /> : <path d="M16 8.5a5 5 0 0 1 0 7M19 5.5a9 9 0 0 1 0 13" />}
    </svg>
  );
}
