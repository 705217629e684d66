// How the remote desktop meets the window: scaled to fit it ("fit"), shown
// pixel for pixel with scroll bars ("real", 1:1), or resized by the VNC
// server to the window ("remote": RFB SetDesktopSize, which the demo images'
// Xvnc accepts). Remote mode keeps noVNC's scaling on, so a server that
// refuses a size (or cannot resize at all) is scaled to the window instead.
//
// HiDPI: browsers measure the window in CSS pixels. On a screen with two
// device pixels per CSS pixel, a desktop of the window's CSS size is drawn
// twice as large, soft. "Sharp" asks the server for device pixels instead
// and scales the picture down by the ratio: crisp, but the desktop's text is
// as small as its pixels.

import type RFB from '@novnc/novnc';
import type { RefObject } from 'preact';
import { useEffect, useState } from 'preact/hooks';

export type ViewMode = 'fit' | 'real' | 'remote';

const MODE_KEY = 'streamspace.viewer.scale';
const SHARP_KEY = 'streamspace.viewer.hidpi';
/** How long a requested size may take to arrive before the viewer says the server refused it. */
const REFUSED_AFTER_MS = 2_500;

/** The mode and sharpness this browser last used; remote resizing when none. */
export function savedView(): { mode: ViewMode; sharp: boolean } {
  const stored = localStorage.getItem(MODE_KEY);
  const mode: ViewMode = stored === 'fit' || stored === 'real' ? stored : 'remote';
  return { mode, sharp: localStorage.getItem(SHARP_KEY) === 'on' };
}

export function saveView(mode: ViewMode, sharp: boolean) {
  localStorage.setItem(MODE_KEY, mode);
  localStorage.setItem(SHARP_KEY, sharp ? 'on' : 'off');
}

/** The device pixels per CSS pixel of this screen (2 on most laptops' "retina" screens). */
export function pixelRatio(): number {
  return window.devicePixelRatio || 1;
}

/** The noVNC 1.7 internals (core/rfb.js) the size request goes through; it has no public hook. */
type Internals = {
  _requestRemoteResize: () => void;
  _screenSize: () => { w: number; h: number };
};

/** `client`'s internals, or null when a noVNC version no longer has them (then HiDPI does nothing). */
function internals(client: RFB): Internals | null {
  const inner = client as unknown as Partial<Internals>;
  if (typeof inner._requestRemoteResize !== 'function' || typeof inner._screenSize !== 'function') {
    console.warn('noVNC has no _requestRemoteResize/_screenSize: HiDPI and re-sizing on demand are off');
    return null;
  }
  return inner as Internals;
}

/**
 * Makes `client`'s size requests ask for device pixels while `sharp()`:
 * noVNC measures its screen element for the request only, so the size is
 * multiplied there and nowhere else (its scaling still fits the picture to
 * the CSS size, which shrinks it by the ratio, and pointer positions follow).
 */
export function requestDevicePixels(client: RFB, sharp: () => boolean) {
  const inner = internals(client);
  if (!inner) return;
  const request = inner._requestRemoteResize.bind(inner);
  const cssSize = inner._screenSize.bind(inner);
  inner._requestRemoteResize = () => {
    const ratio = sharp() ? pixelRatio() : 1;
    if (ratio === 1) return request();
    inner._screenSize = () => {
      const { w, h } = cssSize();
      return { w: Math.floor(w * ratio), h: Math.floor(h * ratio) };
    };
    try {
      request();
    } finally {
      inner._screenSize = cssSize;
    }
  };
}

export function applyViewMode(client: RFB, mode: ViewMode) {
  client.clipViewport = false;
  client.scaleViewport = mode !== 'real';
  client.resizeSession = mode === 'remote';
}

/** Asks for the window's size again (sharpness or the pixel ratio changed); a no-op outside remote mode. */
export function requestSize(client: RFB) {
  internals(client)?._requestRemoteResize();
}

/** The framebuffer size remote mode asks for: the screen element's, in device pixels when sharp. */
function wantedSize(screen: HTMLElement, sharp: boolean) {
  const ratio = sharp ? pixelRatio() : 1;
  const { width, height } = screen.getBoundingClientRect();
  return { width: Math.floor(width * ratio), height: Math.floor(height * ratio) };
}

export type RemoteSize = {
  /** The desktop's framebuffer, as the server last sent it. */
  width: number;
  height: number;
  /** In remote mode: the server has not taken the window's size (it is scaled instead). */
  refused: boolean;
};

/**
 * Follows the framebuffer's size (noVNC's canvas has exactly its pixels)
 * while connected, and in remote mode whether the server took the window's
 * size within a moment of each change.
 */
export function useRemoteSize(
  screen: RefObject<HTMLDivElement | null>,
  connected: boolean,
  mode: ViewMode,
  sharp: boolean,
): RemoteSize | null {
  const [size, setSize] = useState<RemoteSize | null>(null);
  useEffect(() => {
    const el = screen.current;
    const canvas = el?.querySelector('canvas');
    if (!connected || !el || !canvas) {
      setSize(null);
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const measure = (judge: boolean) => {
      const want = wantedSize(el, sharp);
      const fits = canvas.width === want.width && canvas.height === want.height;
      setSize((prev) => ({
        width: canvas.width,
        height: canvas.height,
        // Wrong only once the server has had its moment; right at once.
        refused: mode === 'remote' && !fits && (judge || (prev?.refused ?? false)),
      }));
    };
    const changed = () => {
      measure(false);
      clearTimeout(timer);
      timer = setTimeout(() => measure(true), REFUSED_AFTER_MS);
    };
    const canvasWatch = new MutationObserver(changed);
    canvasWatch.observe(canvas, { attributes: true, attributeFilter: ['width', 'height'] });
    const screenWatch = new ResizeObserver(changed);
    screenWatch.observe(el);
    changed();
    return () => {
      clearTimeout(timer);
      canvasWatch.disconnect();
      screenWatch.disconnect();
    };
  }, [connected, mode, sharp]);
  return size;
}

/** Calls `onChange` when the device pixel ratio changes (browser zoom, another monitor). */
export function usePixelRatioChange(onChange: () => void) {
  const [ratio, setRatio] = useState(pixelRatio());
  useEffect(() => {
    const query = matchMedia(`(resolution: ${ratio}dppx)`);
    const changed = () => {
      setRatio(pixelRatio());
      onChange();
    };
    query.addEventListener('change', changed);
    return () => query.removeEventListener('change', changed);
  }, [ratio]);
  return ratio;
}
