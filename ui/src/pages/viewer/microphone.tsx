// The viewer's microphone into the session (docs/AUDIO.md): the reverse of
// audio.tsx. Only when the user turns it on does the page ask the browser for
// the microphone (which asks the user); each captured frame is encoded by
// WebCodecs to Opus (20 ms), put in an RTP packet and sent, after its 16-bit
// big-endian length (RFC 4571), over the `/audio/{id}/microphone` WebSocket.
// The image decodes it into its virtual microphone, the default source its
// apps record. Turning it off (or leaving) stops the capture: the browser's
// recording indicator goes out.

import { useEffect, useState } from 'preact/hooks';
import { IconMic } from '../../components/icons';

export type MicState =
  | 'off'
  | 'connecting'
  | 'on'
  /** The user or the browser refused the microphone. */
  | 'denied'
  /** No MediaStreamTrackProcessor or WebCodecs Opus encoder here (or not a secure context). */
  | 'unsupported'
  /** The server refused (view-only guest, policy) or the stream dropped. */
  | 'failed';

// Chromium's (and Safari's) raw-frame reader of a track; not yet in TypeScript's DOM library.
declare class MediaStreamTrackProcessor<T = AudioData> {
  constructor(init: { track: MediaStreamTrack });
  readonly readable: ReadableStream<T>;
}

/** Opus's RTP clock is 48 kHz whatever the capture rate (RFC 7587). */
const RTP_CLOCK = 48_000;
const PAYLOAD_TYPE = 96;
/** 20 ms Opus frames: small packets, low latency, little header overhead. */
const FRAME_US = 20_000;
const BITRATE = 64_000;
/** Past this much unsent data the link is too slow: newer sound is worth more than older. */
const MAX_BUFFERED = 64 * 1024;

/** An RTP packet (RFC 3550) carrying `payload`, preceded by its 16-bit length (RFC 4571). */
export function framedRtp(payload: Uint8Array, seq: number, timestamp: number, ssrc: number, marker: boolean) {
  const out = new Uint8Array(2 + 12 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, 12 + payload.length);
  out[2] = 0x80; // version 2, no padding, extension or CSRCs
  out[3] = (marker ? 0x80 : 0) | PAYLOAD_TYPE;
  view.setUint16(4, seq & 0xffff);
  view.setUint32(6, timestamp >>> 0);
  view.setUint32(10, ssrc >>> 0);
  out.set(payload, 14);
  return out;
}

function micUrl(id: string): string {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/audio/${encodeURIComponent(id)}/microphone`;
}

/** One capture: microphone track → AudioData frames → AudioEncoder → RTP → WebSocket. */
class Sender {
  private ws: WebSocket;
  private encoder: AudioEncoder | null = null;
  private seq = Math.floor(Math.random() * 0x10000);
  private ssrc = Math.floor(Math.random() * 0x1_0000_0000);
  private start = Math.floor(Math.random() * 0x1_0000_0000);
  private first = true;
  private closed = false;

  constructor(
    id: string,
    private track: MediaStreamTrack,
    private onState: (s: MicState) => void,
  ) {
    this.ws = new WebSocket(micUrl(id), ['binary']);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => {
      onState('on');
      this.pump().catch(() => this.fail());
    };
    this.ws.onclose = () => this.fail();
  }

  private fail() {
    if (!this.closed) this.onState('failed');
    this.close();
  }

  private async pump() {
    const processor = new MediaStreamTrackProcessor({ track: this.track });
    const reader = processor.readable.getReader();
    while (!this.closed) {
      const { value, done } = await reader.read();
      if (done || !value) break;
      this.encode(value);
    }
    reader.cancel().catch(() => {});
  }

  private encode(data: AudioData) {
    if (!this.encoder) {
      // Configured from the first frame: the capture's rate and channels are the device's.
      this.encoder = new AudioEncoder({ output: (chunk) => this.send(chunk), error: () => this.fail() });
      this.encoder.configure({
        codec: 'opus',
        sampleRate: data.sampleRate,
        numberOfChannels: Math.min(2, data.numberOfChannels),
        bitrate: BITRATE,
        opus: { frameDuration: FRAME_US },
      } as AudioEncoderConfig);
    }
    if (this.encoder.state === 'configured') this.encoder.encode(data);
    data.close();
  }

  private send(chunk: EncodedAudioChunk) {
    if (this.ws.readyState !== WebSocket.OPEN || this.ws.bufferedAmount > MAX_BUFFERED) return;
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    const timestamp = this.start + Math.round((chunk.timestamp * RTP_CLOCK) / 1e6);
    this.ws.send(framedRtp(payload, this.seq++, timestamp, this.ssrc, this.first));
    this.first = false;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.ws.close();
    this.track.stop();
    if (this.encoder && this.encoder.state !== 'closed') this.encoder.close();
  }
}

function canSend(): boolean {
  return (
    typeof AudioEncoder !== 'undefined' &&
    typeof MediaStreamTrackProcessor !== 'undefined' &&
    !!navigator.mediaDevices?.getUserMedia
  );
}

export type SessionMic = { state: MicState; on: boolean; setOn: (on: boolean) => void };

/** Sends the viewer's microphone while it is `on` and `active` (a microphone port, allowed, connected). */
export function useSessionMic(id: string, active: boolean): SessionMic {
  const [on, setOn] = useState(false);
  const [state, setState] = useState<MicState>('off');

  useEffect(() => {
    if (!on || !active) {
      setState('off');
      return;
    }
    if (!canSend()) {
      setState('unsupported');
      return;
    }
    let sender: Sender | null = null;
    let stopped = false;
    setState('connecting');
    navigator.mediaDevices
      .getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } })
      .then((stream) => {
        const [track] = stream.getAudioTracks();
        if (stopped) return stream.getTracks().forEach((t) => t.stop());
        sender = new Sender(id, track, (s) => !stopped && setState(s));
      })
      .catch(() => !stopped && setState('denied'));
    return () => {
      stopped = true;
      sender?.close();
    };
  }, [id, on, active]);

  return { state, on, setOn };
}

const HINT: Record<MicState, string> = {
  off: 'Microphone: off (turn on to speak into the session)',
  connecting: 'Microphone: starting…',
  on: 'Microphone: on, the session hears you',
  denied: 'Microphone: the browser or you refused access (see the address bar)',
  unsupported: 'Microphone: this browser cannot encode Opus from a microphone (needs a recent Chromium and HTTPS)',
  failed: 'Microphone: the session refused it or the connection dropped; turn it off and on to retry',
};

/** The toolbar's microphone toggle. */
export function MicControl({ mic }: { mic: SessionMic }) {
  const label = mic.on ? 'Microphone off' : 'Microphone on';
  return (
    <button
      type="button"
      class="tool"
      aria-pressed={mic.on}
      data-testid="microphone"
      data-mic-state={mic.state}
      onClick={() => mic.setOn(!mic.on)}
      title={`${label} (${HINT[mic.state]})`}
    >
      <IconMic off={!mic.on} />
      <span class="tool-label">Mic</span>
    </button>
  );
}
