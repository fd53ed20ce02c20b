/* streamvault editor: the pure parts, no DOM and no I/O.
 *
 * Times are broadcast times in UTC, kept as milliseconds since the epoch and
 * written like the restreamer's API: 2026-11-28T13:50:07.300. Loaded before
 * editor.js, which uses these as globals; tests call them in the page.
 */
"use strict";

// A jump in program date time larger than this between two segments that the
// playlist does not mark as a discontinuity still counts as a hole (a segment's
// EXTINF and the real gap between starts differ by a frame or so at most).
const GAP_TOLERANCE_MS = 250;

// Until hls.js has parsed a video fragment and its frame rate is known, step by this
// (and measure an MPEG-TS file with a single frame by it).
const DEFAULT_FRAME_S = 1 / 30;

// ---------------------------------------------------------------- times

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** "2026-11-28T13:50:07.300" for a time in ms (rounded to the millisecond). */
function formatTime(ms) {
  return new Date(Math.round(ms)).toISOString().slice(0, 23);
}

function formatClock(ms) {
  return new Date(Math.round(ms)).toISOString().slice(11, 23);
}

/** Seconds as "12.345 s" or "1:02:03.456". */
function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "—";
  const sign = seconds < 0 ? "−" : "";
  let s = Math.abs(seconds);
  if (s < 60) return `${sign}${s.toFixed(3)} s`;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const sec = s.toFixed(3).padStart(6, "0");
  return h ? `${sign}${h}:${pad(m)}:${sec}` : `${sign}${m}:${sec}`;
}

/**
 * Parse a UTC time typed by a person or given in the URL: "2026-11-28T13:50",
 * "2026-11-28 13:50:07.3", optionally ending in Z or +00:00. NaN if invalid.
 */
function parseTime(text) {
  const m =
    /^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*(Z|[+-]00:?00)?\s*$/i.exec(
      text || "",
    );
  if (!m) return NaN;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map((v) => Number(v || 0));
  const base = Date.UTC(year, month - 1, day, hour, minute, second);
  const d = new Date(base);
  if (
    d.getUTCFullYear() !== year ||
    d.getUTCMonth() !== month - 1 ||
    d.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    return NaN;
  }
  return base + (m[7] ? Math.round(Number(`0.${m[7]}`) * 1000) : 0);
}

// ---------------------------------------------------------------- playlists

/**
 * The parts of an HLS media playlist the editor needs (RFC 8216 §4.3.2):
 * each segment's EXTINF duration, EXT-X-PROGRAM-DATE-TIME and whether an
 * EXT-X-DISCONTINUITY precedes it, and its container (`mp4` or `ts`, from the
 * extension of the stored file it names); and whether EXT-X-ENDLIST closes it.
 * A program date time carries over to the following segments (§4.3.2.6).
 */
function parsePlaylist(text) {
  const segments = [];
  let duration = null;
  let pdt = null;
  let discontinuity = false;
  let endList = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith("#EXTINF:")) {
      duration = Number.parseFloat(line.slice(8));
    } else if (line.startsWith("#EXT-X-PROGRAM-DATE-TIME:")) {
      pdt = Date.parse(line.slice(25));
    } else if (line === "#EXT-X-DISCONTINUITY") {
      discontinuity = true;
    } else if (line === "#EXT-X-ENDLIST") {
      endList = true;
    } else if (!line.startsWith("#") && duration !== null) {
      const container = /\.mp4$/i.test(line.split(/[?#]/)[0]) ? "mp4" : "ts";
      segments.push({ pdt, duration, discontinuity: discontinuity && segments.length > 0, uri: line, container });
      if (pdt !== null) pdt += duration * 1000;
      duration = null;
      discontinuity = false;
    }
  }
  return { segments, endList };
}

/**
 * The container to cut [from, to) (ms) to, as the cutter's jobs do: `mp4` as
 * soon as one segment in range is fMP4 (AV1 cannot go to `.ts`), else `ts`
 * (an all-TS range is cut fast only to `.ts`).
 */
function cutContainer(segments, from, to) {
  const mp4 = segments.some(
    (s) => s.container === "mp4" && s.pdt !== null && s.pdt < to && s.pdt + s.duration * 1000 > from,
  );
  return mp4 ? "mp4" : "ts";
}

/**
 * Holes in a window: at every discontinuity (the time between the segments,
 * possibly 0 when an incomplete segment ends a run), at every unmarked jump in
 * program date time, and where the window's edges are not covered. `windowEnd`
 * null means live: the not-yet-recorded future is no hole, and neither is the
 * time before the first segment (a live window reaching back before the
 * recording began, like the default last 30 minutes of a new recording).
 */
function findHoles(segments, windowStart, windowEnd) {
  const holes = [];
  if (!segments.length) {
    if (windowEnd !== null) holes.push({ from: windowStart, to: windowEnd });
    return holes;
  }
  const first = segments[0];
  if (windowEnd !== null && first.pdt - windowStart > GAP_TOLERANCE_MS) holes.push({ from: windowStart, to: first.pdt });
  for (let i = 1; i < segments.length; i++) {
    const prev = segments[i - 1];
    const seg = segments[i];
    const prevEnd = prev.pdt + prev.duration * 1000;
    const gap = seg.pdt - prevEnd;
    if (seg.discontinuity || gap > GAP_TOLERANCE_MS) {
      holes.push({ from: Math.min(prevEnd, seg.pdt), to: seg.pdt });
    }
  }
  const last = segments[segments.length - 1];
  const lastEnd = last.pdt + last.duration * 1000;
  if (windowEnd !== null && windowEnd - lastEnd > GAP_TOLERANCE_MS) {
    holes.push({ from: lastEnd, to: windowEnd });
  }
  return holes;
}

function describeHoles(holes, what) {
  if (!holes.length) return `No holes in ${what}.`;
  const missing = holes.reduce((sum, h) => sum + (h.to - h.from), 0) / 1000;
  const parts = holes.slice(0, 5).map((h) =>
    h.to > h.from
      ? `${formatClock(h.from)}–${formatClock(h.to)} (${formatDuration((h.to - h.from) / 1000)})`
      : `${formatClock(h.from)} (an incomplete segment)`,
  );
  if (holes.length > 5) parts.push(`and ${holes.length - 5} more`);
  const count = holes.length === 1 ? "1 hole" : `${holes.length} holes`;
  return `${count} in ${what}, ${formatDuration(missing)} missing: ${parts.join(", ")}.`;
}

// ---------------------------------------------------------------- MPEG-TS

/**
 * The video duration of an MPEG-TS file in seconds, from its PES timestamps
 * (ISO 13818-1): PAT → PMT → the first video stream's PID, then every PTS on
 * it. Duration is last presentation minus first plus one frame. Null when the
 * file has no recognisable video stream.
 */
function tsVideoDuration(buffer) {
  const d = new Uint8Array(buffer);
  const VIDEO_STREAM_TYPES = new Set([0x01, 0x02, 0x1b, 0x24]);
  let pmtPid = -1;
  let videoPid = -1;
  const pts = [];
  for (let off = 0; off + 188 <= d.length; off += 188) {
    if (d[off] !== 0x47) return null;
    const unitStart = (d[off + 1] & 0x40) !== 0;
    const pid = ((d[off + 1] & 0x1f) << 8) | d[off + 2];
    const adaptation = (d[off + 3] >> 4) & 3;
    if (!unitStart || !(adaptation & 1)) continue;
    let p = off + 4;
    if (adaptation === 3) p += 1 + d[p];
    if (p >= off + 188) continue;
    if (pid === 0 || (pid === pmtPid && videoPid < 0)) {
      p += 1 + d[p]; // pointer field
      const sectionEnd = Math.min(p + 3 + (((d[p + 1] & 0x0f) << 8) | d[p + 2]) - 4, off + 188);
      if (pid === 0) {
        for (let i = p + 8; i + 4 <= sectionEnd; i += 4) {
          if (((d[i] << 8) | d[i + 1]) !== 0) {
            pmtPid = ((d[i + 2] & 0x1f) << 8) | d[i + 3];
            break;
          }
        }
      } else {
        let i = p + 12 + (((d[p + 10] & 0x0f) << 8) | d[p + 11]);
        while (i + 5 <= sectionEnd) {
          if (VIDEO_STREAM_TYPES.has(d[i])) {
            videoPid = ((d[i + 1] & 0x1f) << 8) | d[i + 2];
            break;
          }
          i += 5 + (((d[i + 3] & 0x0f) << 8) | d[i + 4]);
        }
      }
    } else if (pid === videoPid && d[p] === 0 && d[p + 1] === 0 && d[p + 2] === 1 && d[p + 7] & 0x80) {
      const q = p + 9;
      pts.push((d[q] >> 1 & 7) * 2 ** 30 + ((d[q + 1] << 7) | (d[q + 2] >> 1)) * 2 ** 15 + ((d[q + 3] << 7) | (d[q + 4] >> 1)));
    }
  }
  if (!pts.length) return null;
  // Unwrap the 33-bit clock around the first timestamp.
  const ref = pts[0];
  const unwrapped = pts.map((v) => (v - ref > 2 ** 32 ? v - 2 ** 33 : ref - v > 2 ** 32 ? v + 2 ** 33 : v)).sort((a, b) => a - b);
  let frame = Infinity;
  for (let i = 1; i < unwrapped.length; i++) {
    const step = unwrapped[i] - unwrapped[i - 1];
    if (step > 0 && step < frame) frame = step;
  }
  if (!Number.isFinite(frame)) frame = DEFAULT_FRAME_S * 90000;
  return (unwrapped[unwrapped.length - 1] - unwrapped[0] + frame) / 90000;
}

/**
 * The video duration of an MP4 file in seconds (ISO 14496-12): the sum of the
 * first video track's sample durations, from its `stts` (a progressive file)
 * and from every fragment's `trun`, with `tfhd` and `trex` defaults (a
 * fragmented one), over its `mdhd` timescale. Null when the file has no
 * recognisable video track.
 */
function mp4VideoDuration(buffer) {
  try {
    return mp4Duration(new DataView(buffer));
  } catch (e) {
    if (e instanceof RangeError) return null; // a box that claims more than it holds
    throw e;
  }
}

function mp4Duration(d) {
  const buffer = d.buffer;
  const u32 = (at) => d.getUint32(at);
  const type = (at) => String.fromCharCode(d.getUint8(at), d.getUint8(at + 1), d.getUint8(at + 2), d.getUint8(at + 3));
  // The boxes in [from, to) as {type, start (of the content), end}; stops at a malformed one.
  function boxes(from, to) {
    const found = [];
    for (let at = from; at + 8 <= to; ) {
      let size = u32(at);
      let start = at + 8;
      if (size === 1 && start + 8 <= to) {
        size = Number(d.getBigUint64(start));
        start += 8;
      } else if (size === 0) size = to - at;
      if (size < start - at || at + size > to) break;
      found.push({ type: type(at + 4), start, end: at + size });
      at += size;
    }
    return found;
  }
  const child = (box, name) => box && boxes(box.start, box.end).find((b) => b.type === name);
  if (buffer.byteLength < 8) return null;
  const top = boxes(0, buffer.byteLength);
  const moov = top.find((b) => b.type === "moov");
  let track = null;
  let timescale = 0;
  let total = 0;
  for (const trak of moov ? boxes(moov.start, moov.end).filter((b) => b.type === "trak") : []) {
    const mdia = child(trak, "mdia");
    const hdlr = child(mdia, "hdlr");
    const mdhd = child(mdia, "mdhd");
    const tkhd = child(trak, "tkhd");
    if (!hdlr || !mdhd || !tkhd || type(hdlr.start + 8) !== "vide") continue;
    track = u32(tkhd.start + (d.getUint8(tkhd.start) === 1 ? 20 : 12));
    timescale = u32(mdhd.start + (d.getUint8(mdhd.start) === 1 ? 20 : 12));
    const stts = child(child(child(mdia, "minf"), "stbl"), "stts");
    for (let i = 0, n = stts ? u32(stts.start + 4) : 0; i < n; i++) {
      total += u32(stts.start + 8 + 8 * i) * u32(stts.start + 12 + 8 * i);
    }
    break;
  }
  if (track === null || !timescale) return null;
  const mvex = child(moov, "mvex");
  const trex = mvex && boxes(mvex.start, mvex.end).find((b) => b.type === "trex" && u32(b.start + 4) === track);
  const trexDuration = trex ? u32(trex.start + 12) : 0;
  for (const moof of top.filter((b) => b.type === "moof")) {
    for (const traf of boxes(moof.start, moof.end).filter((b) => b.type === "traf")) {
      const tfhd = child(traf, "tfhd");
      if (!tfhd || u32(tfhd.start + 4) !== track) continue;
      const tfFlags = u32(tfhd.start) & 0xffffff;
      let at = tfhd.start + 8 + (tfFlags & 0x01 ? 8 : 0) + (tfFlags & 0x02 ? 4 : 0);
      const defaultDuration = tfFlags & 0x08 ? u32(at) : trexDuration;
      for (const trun of boxes(traf.start, traf.end).filter((b) => b.type === "trun")) {
        const flags = u32(trun.start) & 0xffffff;
        const count = u32(trun.start + 4);
        if (!(flags & 0x100)) {
          total += count * defaultDuration;
          continue;
        }
        const stride = 4 * [0x100, 0x200, 0x400, 0x800].filter((f) => flags & f).length;
        at = trun.start + 8 + (flags & 0x01 ? 4 : 0) + (flags & 0x04 ? 4 : 0);
        for (let i = 0; i < count && at + 4 <= trun.end; i++, at += stride) total += u32(at);
      }
    }
  }
  return total / timescale;
}

function formatBytes(n) {
  return n < 1e6 ? `${(n / 1e3).toFixed(0)} kB` : `${(n / 1e6).toFixed(1)} MB`;
}

// ---------------------------------------------------------------- busy servers

// A restreamer running as many cuts as it allows answers 503 (the node) or 429
// (this client) with Retry-After: wait that long (within these bounds) and retry.
const BUSY_RETRY_DEFAULT_S = 5;
const BUSY_RETRY_MAX_S = 60;

/** Seconds to wait before retrying a response with this status and Retry-After
 * header (a number of seconds or an HTTP date), or null if it is not "busy". */
function busyRetryDelay(status, retryAfter, now = Date.now()) {
  if (status !== 503 && status !== 429) return null;
  let seconds = BUSY_RETRY_DEFAULT_S;
  const text = (retryAfter || "").trim();
  if (/^\d+$/.test(text)) seconds = Number(text);
  else if (text && !Number.isNaN(Date.parse(text))) seconds = (Date.parse(text) - now) / 1000;
  return Math.min(BUSY_RETRY_MAX_S, Math.max(1, Math.ceil(seconds)));
}
