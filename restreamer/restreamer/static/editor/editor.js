/* streamvault editor.
 *
 * Plays any stored time range of a channel through the restreamer's HLS
 * playlists (hls.js), maps the playhead to broadcast time with the playlist's
 * EXT-X-PROGRAM-DATE-TIME tags, lets an editor mark a start and an end, shows
 * the holes (EXT-X-DISCONTINUITY, uncovered edges) in the window and in the
 * selection, previews the exact cut from /cut, and submits it as a job to a
 * cutter's API, whose jobs it then follows.
 *
 * How it fails, in words on the page, never silently: the restreamer refusing
 * a request (its one-line reason is shown), a range with no video (with a way
 * to the latest recorded hour), a player error, the cutter API unreachable or
 * refusing a job. `window.editor` exposes the state for tests and debugging.
 *
 * Times, playlists, holes and MPEG-TS measuring are in lib.js (pure functions).
 */
"use strict";

// How often the job list is refreshed while the page is open.
const JOB_POLL_MS = 1500;
// Default window when the URL names none: the last half hour, following live.
const DEFAULT_WINDOW_MS = 30 * 60 * 1000;
// A live window with nothing recorded yet is looked at again this often.
const EMPTY_LIVE_RETRY_MS = 10 * 1000;
// Seeks to a frame's time land this much after it (a frame lasts 16 ms or more).
const SEEK_EPSILON_S = 0.001;
// Larger previews are measured and offered for download, not played: one
// fragment of this size is about what a browser's media buffer takes at once.
const PREVIEW_PLAY_MAX_BYTES = 100 * 1000 * 1000;
const API_STORAGE_KEY = "streamvault.editor.api";
const LOCATION_STORAGE_KEY = "streamvault.editor.upload_location";
// Job states in which a cutter may still be stopped (docs/DATABASE.md).
const CANCELLABLE = new Set(["EDITED", "CLAIMED"]);

const $ = (id) => document.getElementById(id);
const video = $("video");

const editor = {
  channel: null,
  quality: null,
  windowStart: null, // ms
  windowEnd: null, // ms, or null when following live
  playlistUrl: null,
  segments: [], // [{pdt (ms), duration (s), discontinuity (bool)}] of the loaded window
  holes: [], // [{from, to} ms], `to - from` may be 0 for a break with no time missing
  selection: { start: null, end: null },
  frameS: DEFAULT_FRAME_S,
  stopAt: null, // ms: where "Play selection" pauses
  autoplay: null, // how starting a live window without a click went: "playing" or the error's name
  hls: null,
  previewHls: null,
  api: "",
  jobs: [],
  errors: [], // every message of kind "error" shown, for tests
  hlsErrors: [], // every hls.js ERROR event: {type, details, fatal}
};
window.editor = editor;

// ---------------------------------------------------------------- messages

/** Show (or replace) the message under `key`; kind is error, warn or info. */
function showMessage(key, kind, text, action) {
  let el = document.querySelector(`#messages [data-key="${key}"]`);
  if (!el) {
    el = document.createElement("div");
    el.dataset.key = key;
    $("messages").appendChild(el);
  }
  el.className = `message ${kind}`;
  el.textContent = text;
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = action.label;
    button.addEventListener("click", action.run);
    el.appendChild(button);
  }
  noteError(kind, text);
}

/** Keep what was said as an error for tests, once per change (polls repeat themselves). */
function noteError(kind, text) {
  if (kind !== "error" || editor.errors[editor.errors.length - 1] === text) return;
  editor.errors.push(text);
  if (editor.errors.length > 100) editor.errors.shift();
}

function clearMessage(key) {
  const el = document.querySelector(`#messages [data-key="${key}"]`);
  if (el) el.remove();
}

function setStatus(id, kind, text) {
  const el = $(id);
  el.className = kind ? `status-${kind}` : "";
  el.textContent = text;
  noteError(kind, text);
}

/** The words for a failed fetch: the server's own reason when it gave one. */
async function describeResponse(response) {
  let text = "";
  try {
    text = (await response.text()).trim();
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object") text = parsed.error || parsed.message || text;
  } catch (e) {
    // not JSON: keep the text
  }
  if (text.length > 300) text = `${text.slice(0, 300)}…`;
  return `${response.status} ${response.statusText}${text ? `: ${text}` : ""}`;
}

// ---------------------------------------------------------------- media time <-> broadcast time

/**
 * The player's fragments, [{start (media s), duration (s), pdt (ms)}], where
 * `start` is the media time of the fragment's first video frame: a segment's
 * program date time is the time of its first video frame, which is also where
 * a cut counts from. (Audio starts a little earlier in each segment, and
 * hls.js's own fragment start is the earlier of the two.) hls.js learns each
 * fragment's video start as it parses it; a fragment not parsed yet gets the
 * offset of the last one that was.
 */
function timeline() {
  const hls = editor.hls;
  const level = hls && hls.levels && hls.levels[Math.max(hls.currentLevel, 0)];
  const fragments = level && level.details && level.details.fragments;
  if (fragments && fragments.length) {
    let offset = 0;
    return fragments.map((f) => {
      const videoStart = f.elementaryStreams && f.elementaryStreams.video && f.elementaryStreams.video.startPTS;
      if (Number.isFinite(videoStart)) offset = videoStart - f.start;
      return { start: f.start + offset, duration: f.duration, pdt: f.programDateTime };
    });
  }
  let start = 0;
  return editor.segments.map((s) => {
    const entry = { start, duration: s.duration, pdt: s.pdt };
    start += s.duration;
    return entry;
  });
}

/** Broadcast time (ms) of a media time, or null when unknown. */
function mediaToBroadcast(t) {
  const frags = timeline();
  if (!frags.length) return null;
  let frag = frags[0];
  for (const f of frags) {
    if (f.start <= t + 1e-6) frag = f;
    else break;
  }
  if (frag.pdt === null || frag.pdt === undefined || Number.isNaN(frag.pdt)) return null;
  return frag.pdt + (t - frag.start) * 1000;
}

/** Media time of a broadcast time; a time in a hole maps to the video after it. */
function broadcastToMedia(ms) {
  const frags = timeline();
  if (!frags.length) return null;
  for (const f of frags) {
    const end = f.pdt + f.duration * 1000;
    if (ms < f.pdt) return f.start; // before this fragment: in a hole, or before the first
    if (ms < end) return f.start + (ms - f.pdt) / 1000;
  }
  const last = frags[frags.length - 1];
  return last.start + last.duration;
}

/**
 * The media time of what the editor sees. Paused, that is the frame on screen:
 * a seek may land between two frames, the earlier one shows, and a mark must
 * be that frame's time, not a time just after it. Frames lie on a grid from
 * their fragment's first video frame. Playing, it is the playhead.
 */
function playheadMedia() {
  const t = video.currentTime;
  if (!video.paused) return t;
  const frags = timeline();
  if (!frags.length) return t;
  let frag = null;
  for (const f of frags) {
    if (f.start <= t + 1e-6) frag = f;
    else break;
  }
  if (frag === null) return frags[0].start; // before the first frame, the first frame shows
  return frag.start + Math.floor((t - frag.start) / editor.frameS + 1e-3) * editor.frameS;
}

function playheadMs() {
  return mediaToBroadcast(playheadMedia());
}

// ---------------------------------------------------------------- sources

function segmentUrl(...parts) {
  return parts.map(encodeURIComponent).join("/");
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(await describeResponse(response));
  return response.json();
}

function fillSelect(select, values, wanted) {
  select.replaceChildren(
    ...values.map((v) => {
      const option = document.createElement("option");
      option.value = option.textContent = v;
      return option;
    }),
  );
  if (values.includes(wanted)) select.value = wanted;
}

async function loadChannels(wantedChannel, wantedQuality) {
  let channels;
  try {
    channels = await fetchJson("/files");
  } catch (e) {
    showMessage("source", "error", `Cannot list the channels on this restreamer: ${e.message}`);
    return false;
  }
  if (!channels.length) {
    showMessage("source", "warn", "This restreamer has no recordings yet: no channel to show.");
    return false;
  }
  fillSelect($("channel"), channels, wantedChannel);
  return loadQualities(wantedQuality);
}

async function loadQualities(wanted) {
  const channel = $("channel").value;
  let qualities;
  try {
    qualities = await fetchJson(`/files/${segmentUrl(channel)}`);
  } catch (e) {
    showMessage("source", "error", `Cannot list the qualities of ${channel}: ${e.message}`);
    return false;
  }
  if (!qualities.length) {
    showMessage("source", "warn", `${channel} has no recordings in any quality.`);
    return false;
  }
  fillSelect($("quality"), qualities, wanted || (qualities.includes("source") ? "source" : null));
  clearMessage("source");
  return true;
}

function setLive(live) {
  $("live").checked = live;
  $("window-end").disabled = live;
  if (live) $("window-end").value = "";
}

/** Read and check the window fields; null (with a message) when they are wrong. */
function readWindow() {
  const start = parseTime($("window-start").value);
  const live = $("live").checked;
  const end = live ? null : parseTime($("window-end").value);
  markInvalid($("window-start"), Number.isNaN(start));
  markInvalid($("window-end"), !live && Number.isNaN(end));
  if (Number.isNaN(start) || (!live && Number.isNaN(end))) {
    showMessage("window", "error", "Times look like 2026-11-28T13:50:07 (UTC); leave To empty and tick 'follow live' to follow the recording.");
    return null;
  }
  if (end !== null && end <= start) {
    showMessage("window", "error", "The window's To must be after its From.");
    return null;
  }
  clearMessage("window");
  return { start, end };
}

function markInvalid(input, invalid) {
  input.setAttribute("aria-invalid", invalid ? "true" : "false");
}

function updateUrl() {
  const params = new URLSearchParams(location.search);
  if (editor.channel) params.set("channel", editor.channel);
  if (editor.quality) params.set("quality", editor.quality);
  if (editor.windowStart !== null) params.set("start", formatTime(editor.windowStart));
  if (editor.windowEnd !== null) params.set("end", formatTime(editor.windowEnd));
  else params.delete("end");
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

/**
 * Load the window in the fields into the player. The playlist is fetched once
 * here first: hls.js reports a refused request without the restreamer's reason,
 * and an empty range is better said in words than shown as a black player.
 */
async function loadWindow() {
  const range = readWindow();
  const channel = $("channel").value;
  const quality = $("quality").value;
  if (!range || !channel || !quality) return;
  editor.channel = channel;
  editor.quality = quality;
  editor.windowStart = range.start;
  editor.windowEnd = range.end;
  updateUrl();
  const query = new URLSearchParams({ start: formatTime(range.start) });
  if (range.end !== null) query.set("end", formatTime(range.end));
  const url = `/playlist/${segmentUrl(channel)}/${segmentUrl(quality)}.m3u8?${query}`;
  editor.playlistUrl = url;
  clearMessage("player");
  clearMessage("empty");
  let text;
  try {
    const response = await fetch(url);
    if (response.status === 404) {
      // Nothing recorded in the window: said below, with the latest recording.
      text = "";
    } else if (!response.ok) {
      showMessage("player", "error", `The restreamer refused this window: ${await describeResponse(response)}`);
      stopPlayer();
      return;
    } else {
      text = await response.text();
    }
  } catch (e) {
    showMessage("player", "error", `Cannot reach the restreamer for the playlist: ${e.message}`);
    return;
  }
  if (editor.playlistUrl !== url) return; // a newer load started meanwhile
  const parsed = parsePlaylist(text);
  setSegments(parsed.segments);
  if (!parsed.segments.length) {
    stopPlayer();
    await explainEmpty(channel, quality, range);
    if (range.end === null) {
      // Following live but nothing recorded yet: look again until something is.
      setTimeout(() => editor.playlistUrl === url && !editor.hls && loadWindow(), EMPTY_LIVE_RETRY_MS);
    }
    return;
  }
  if (parsed.segments.some((s) => s.pdt === null || Number.isNaN(s.pdt))) {
    showMessage("player", "warn", "This playlist has no program date times: broadcast times cannot be shown.");
  }
  startPlayer(url);
}

async function explainEmpty(channel, quality, range) {
  const what = range.end === null ? `since ${formatTime(range.start)}` : `between ${formatTime(range.start)} and ${formatTime(range.end)}`;
  let action;
  let latest = "";
  try {
    const hours = await fetchJson(`/files/${segmentUrl(channel)}/${segmentUrl(quality)}`);
    if (hours.length) {
      const hour = hours[hours.length - 1];
      const from = parseTime(`${hour}:00`);
      latest = ` The latest recorded hour is ${hour}.`;
      if (!Number.isNaN(from)) {
        action = {
          label: `Show ${hour}`,
          run: () => {
            setLive(false);
            $("window-start").value = formatTime(from);
            $("window-end").value = formatTime(from + 3600 * 1000);
            loadWindow();
          },
        };
      }
    }
  } catch (e) {
    // the listing failing too changes nothing in what we say
  }
  showMessage("empty", "warn", `No video of ${channel} (${quality}) ${what}.${latest}`, action);
}

function stopPlayer() {
  if (editor.hls) {
    editor.hls.destroy();
    editor.hls = null;
  }
  video.removeAttribute("src");
  video.load();
  render();
}

function startPlayer(url) {
  if (editor.hls) editor.hls.destroy();
  if (!window.Hls) {
    showMessage("player", "error", "The player library (hls.js) did not load: run tools/setup on the restreamer's machine.");
    return;
  }
  if (!Hls.isSupported()) {
    showMessage("player", "error", "This browser cannot play HLS through Media Source Extensions.");
    return;
  }
  const hls = new Hls({ startPosition: editor.windowEnd === null ? -1 : 0 });
  editor.hls = hls;
  let recovered = false;
  hls.on(Hls.Events.LEVEL_LOADED, (event, data) => onLevel(data));
  hls.on(Hls.Events.FRAG_PARSING_DATA, onParsingData);
  hls.on(Hls.Events.FRAG_BUFFERED, () => clearMessage("player"));
  if (editor.windowEnd === null) {
    // Following live: start playing at the live edge, as a viewer expects,
    // once there is something to play (a play() while the player is still
    // setting its source up can be aborted by that set-up).
    hls.once(Hls.Events.FRAG_BUFFERED, () => autoplay(hls, 1));
  }
  hls.on(Hls.Events.ERROR, (event, data) => {
    editor.hlsErrors.push({ type: data.type, details: data.details, fatal: data.fatal });
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
      recovered = true;
      hls.recoverMediaError();
      return;
    }
    const status = data.response && data.response.code ? ` (HTTP ${data.response.code})` : "";
    showMessage("player", "error", `The player stopped: ${data.details}${status}.`, {
      label: "Retry",
      run: loadWindow,
    });
  });
  hls.loadSource(url);
  hls.attachMedia(video);
}

/** Start playback without a click; say so if the browser wants one. */
function autoplay(hls, retries) {
  if (editor.hls !== hls || !video.paused) return;
  video.play().then(
    () => {
      editor.autoplay = "playing";
    },
    (e) => {
      editor.autoplay = e.name;
      if (e.name === "NotAllowedError") {
        showMessage("autoplay", "info", "Press Play to start following the recording.");
      } else if (retries > 0) {
        video.addEventListener("canplay", () => autoplay(hls, retries - 1), { once: true });
        if (video.readyState >= 3) autoplay(hls, retries - 1);
      }
    },
  );
}

/**
 * Each (re)load of the playlist: a live window grows. The playlist's own text
 * is the truth for coverage and holes; hls.js's fragment durations drift from
 * EXTINF as it measures the real timestamps, so they are only the fallback.
 */
function onLevel(data) {
  const text = data.networkDetails && data.networkDetails.responseText;
  if (typeof text === "string" && text.startsWith("#EXTM3U")) {
    setSegments(parsePlaylist(text).segments);
    return;
  }
  const details = data.details;
  if (!details || !details.fragments) return;
  let prevCc = null;
  setSegments(
    details.fragments.map((f) => {
      const segment = { pdt: f.programDateTime, duration: f.duration, discontinuity: prevCc !== null && f.cc !== prevCc };
      prevCc = f.cc;
      return segment;
    }),
  );
}

function setSegments(segments) {
  editor.segments = segments;
  editor.holes = findHoles(segments, editor.windowStart, editor.windowEnd);
  const holes = $("holes");
  holes.textContent = segments.length ? describeHoles(editor.holes, "this window") : "";
  holes.className = `holes ${editor.holes.length ? "has-holes" : "no-holes"}`;
  if (segments.length) {
    const first = segments[0].pdt;
    const last = segments[segments.length - 1];
    const covered = segments.reduce((sum, s) => sum + s.duration, 0);
    $("window-info").textContent = `video ${formatClock(first)}–${formatClock(last.pdt + last.duration * 1000)}, ${formatDuration(covered)} in ${segments.length} segments${editor.windowEnd === null ? ", following live" : ""}`;
  } else {
    $("window-info").textContent = "";
  }
  renderSelection();
  render();
}

// ---------------------------------------------------------------- display

/** The window's extent on the timeline, in ms. */
function timelineExtent() {
  const segs = editor.segments;
  let from = editor.windowStart;
  let to = editor.windowEnd;
  if (segs.length) {
    const last = segs[segs.length - 1];
    const lastEnd = last.pdt + last.duration * 1000;
    if (to === null) to = Math.max(lastEnd, Date.now());
    from = Math.min(from, segs[0].pdt);
    to = Math.max(to, lastEnd);
  }
  if (from === null || to === null || to <= from) return null;
  return { from, to };
}

function placeBar(el, from, to, extent) {
  const span = extent.to - extent.from;
  const left = Math.max(0, (from - extent.from) / span);
  const right = Math.min(1, (to - extent.from) / span);
  el.style.left = `${left * 100}%`;
  el.style.width = `max(2px, ${Math.max(0, right - left) * 100}%)`;
}

function renderTimeline() {
  const extent = timelineExtent();
  const bars = $("timeline-bars");
  bars.replaceChildren();
  $("scale-start").textContent = extent ? formatTime(extent.from) : "";
  $("scale-end").textContent = extent ? formatTime(extent.to) : "";
  if (!extent) return;
  // Covered runs: neighbouring segments merged.
  let run = null;
  const runs = [];
  for (const s of editor.segments) {
    const end = s.pdt + s.duration * 1000;
    if (run && !s.discontinuity && s.pdt - run.to <= GAP_TOLERANCE_MS) run.to = end;
    else runs.push((run = { from: s.pdt, to: end }));
  }
  for (const r of runs) {
    const el = document.createElement("div");
    el.className = "bar";
    placeBar(el, r.from, r.to, extent);
    bars.appendChild(el);
  }
  for (const h of editor.holes) {
    const el = document.createElement("div");
    el.className = "bar hole";
    el.title = h.to > h.from ? `hole: ${formatTime(h.from)} – ${formatTime(h.to)}` : `incomplete segment before ${formatTime(h.to)}`;
    placeBar(el, h.from, h.to, extent);
    bars.appendChild(el);
  }
}

function renderPlayhead() {
  const ms = editor.segments.length ? playheadMs() : null;
  const out = $("broadcast-time");
  out.textContent = ms === null ? "—" : formatTime(ms);
  out.dataset.ms = ms === null ? "" : String(Math.round(ms));
  out.dataset.media = String(video.currentTime);
  out.dataset.frame = String(playheadMedia());
  const extent = timelineExtent();
  const head = $("timeline-playhead");
  head.hidden = ms === null || !extent;
  if (!head.hidden) head.style.left = `${((ms - extent.from) / (extent.to - extent.from)) * 100}%`;
  $("play").textContent = video.paused ? "Play" : "Pause";
}

function render() {
  renderTimeline();
  renderSelectionBar();
  renderPlayhead();
}

// ---------------------------------------------------------------- transport

function seekMedia(t) {
  const seekable = video.seekable;
  if (seekable.length) {
    t = Math.min(Math.max(t, seekable.start(0)), seekable.end(seekable.length - 1));
  }
  if (Number.isFinite(t)) video.currentTime = Math.max(0, t);
}

function seekToBroadcast(ms) {
  const t = broadcastToMedia(ms);
  if (t !== null) seekMedia(t + SEEK_EPSILON_S);
}

/**
 * Steps count from the frame on screen. The seek lands a hair after the
 * target frame's time, so that rounding never shows the frame before it.
 */
function stepSeconds(seconds) {
  seekMedia(playheadMedia() + seconds + SEEK_EPSILON_S);
}

function stepFrames(frames) {
  video.pause();
  seekMedia(playheadMedia() + frames * editor.frameS + SEEK_EPSILON_S);
}

/** Play the selection once: from the start mark, pausing at the end mark. */
function playSelection() {
  const problem = selectionProblem();
  if (problem) {
    setStatus("preview-status", "error", problem);
    return;
  }
  editor.stopAt = editor.selection.end;
  seekToBroadcast(editor.selection.start);
  video.play().catch((e) => showMessage("player", "warn", `The browser did not start playback: ${e.message}`));
}

/**
 * While playing a selection, stop on its last frame (the end is exclusive).
 * Checked on every frame shown and time update; playback overshoots by up to
 * a frame or two before this runs, so it then seeks back to that frame.
 */
function checkStopAt() {
  if (editor.stopAt === null || video.paused) return;
  const lastFrame = editor.stopAt - editor.frameS * 1000;
  const ms = playheadMs();
  if (ms !== null && ms >= lastFrame - editor.frameS * 500) {
    video.pause();
    editor.stopAt = null;
    seekToBroadcast(lastFrame);
  }
}

function togglePlay() {
  if (video.paused) video.play().catch((e) => showMessage("player", "warn", `The browser did not start playback: ${e.message}`));
  else video.pause();
}

/** Keep the broadcast time in step with the frames shown while playing. */
function watchFrames() {
  if (!video.requestVideoFrameCallback) return;
  const onFrame = () => {
    checkStopAt();
    renderPlayhead();
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

/** The frame duration, from the first video fragment hls.js parses. */
function onParsingData(event, data) {
  if (data.type === "video" && data.nb > 1 && data.endPTS > data.startPTS) {
    editor.frameS = (data.endPTS - data.startPTS) / data.nb;
  }
}

// ---------------------------------------------------------------- selection

function setSelection(which, ms) {
  editor.selection[which] = ms === null ? null : Math.round(ms);
  const input = $(which === "start" ? "cut-start" : "cut-end");
  input.value = ms === null ? "" : formatTime(ms);
  markInvalid(input, false);
  renderSelection();
}

function markFromPlayhead(which) {
  const ms = playheadMs();
  if (ms === null) {
    setStatus("preview-status", "error", "Load a window with video first: there is no playhead to mark.");
    return;
  }
  setSelection(which, ms);
}

function onSelectionTyped(which) {
  const input = $(which === "start" ? "cut-start" : "cut-end");
  if (!input.value.trim()) {
    editor.selection[which] = null;
    markInvalid(input, false);
  } else {
    const ms = parseTime(input.value);
    markInvalid(input, Number.isNaN(ms));
    if (Number.isNaN(ms)) {
      $("cut-duration").textContent = "times look like 2026-11-28T13:50:07.300 (UTC)";
      return;
    }
    editor.selection[which] = ms;
  }
  renderSelection();
}

function selectionProblem() {
  const { start, end } = editor.selection;
  if (start === null || end === null) return "Mark a start and an end first (keys [ and ], or type them).";
  if (end <= start) return "The end must be after the start.";
  return null;
}

function selectionHoles() {
  const { start, end } = editor.selection;
  if (start === null || end === null || end <= start) return [];
  const inside = editor.holes.filter((h) => h.to >= start && h.from <= end && !(h.to === h.from && (h.to === start || h.to === end)));
  return inside.map((h) => ({ from: Math.max(h.from, start), to: Math.min(h.to, end) }));
}

function renderSelection() {
  const { start, end } = editor.selection;
  const out = $("cut-duration");
  const problem = start !== null && end !== null && end <= start;
  out.textContent = start === null || end === null ? "—" : problem ? "the end is before the start" : formatDuration((end - start) / 1000);
  out.className = problem ? "status-error" : "";
  const holesEl = $("cut-holes");
  if (start === null || end === null || problem || !editor.segments.length) {
    holesEl.textContent = "";
  } else {
    const holes = selectionHoles();
    holesEl.textContent =
      describeHoles(holes, "the selection") +
      (holes.length && !$("allow-holes").checked ? " The cut will be refused unless 'allow holes' is ticked." : "");
    holesEl.className = `holes ${holes.length ? "has-holes" : "no-holes"}`;
  }
  renderSelectionBar();
}

function renderSelectionBar() {
  const { start, end } = editor.selection;
  const extent = timelineExtent();
  const el = $("timeline-selection");
  el.hidden = !extent || start === null || end === null || end <= start;
  if (!el.hidden) placeBar(el, start, end, extent);
}

// ---------------------------------------------------------------- preview

let previewAbort = null;
let previewUrls = [];

async function preview() {
  const problem = selectionProblem();
  if (problem) {
    setStatus("preview-status", "error", problem);
    return;
  }
  if (!editor.channel) {
    setStatus("preview-status", "error", "Choose a channel and quality first.");
    return;
  }
  if (previewAbort) previewAbort.abort();
  previewAbort = new AbortController();
  const { start, end } = editor.selection;
  const query = new URLSearchParams({ start: formatTime(start), end: formatTime(end), type: "fast" });
  if ($("allow-holes").checked) query.set("allow_holes", "true");
  const container = cutContainer(editor.segments, start, end);
  const url = `/cut/${segmentUrl(editor.channel)}/${segmentUrl(editor.quality)}.${container}?${query}`;
  setStatus("preview-status", "busy", "Cutting…");
  $("preview").disabled = true;
  try {
    const signal = previewAbort.signal;
    let response = await fetch(url, { signal });
    for (let delay; (delay = busyRetryDelay(response.status, response.headers.get("Retry-After"))) !== null; ) {
      setStatus("preview-status", "busy", `The restreamer is busy, retrying in ${delay} s…`);
      await sleepUnlessAborted(delay * 1000, signal);
      setStatus("preview-status", "busy", "Cutting…");
      response = await fetch(url, { signal });
    }
    if (!response.ok) {
      setStatus("preview-status", "error", `The restreamer could not cut this range: ${await describeResponse(response)}`);
      return;
    }
    const reader = response.body.getReader();
    const chunks = [];
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      setStatus("preview-status", "busy", `Cutting… ${formatBytes(received)} received`);
    }
    const blob = new Blob(chunks, { type: container === "mp4" ? "video/mp4" : "video/mp2t" });
    if (!blob.size) {
      setStatus("preview-status", "error", "The restreamer sent an empty cut.");
      return;
    }
    const buffer = await blob.arrayBuffer();
    const duration = container === "mp4" ? mp4VideoDuration(buffer) : tsVideoDuration(buffer);
    showPreview(blob, duration, (end - start) / 1000, container);
  } catch (e) {
    if (e.name !== "AbortError") setStatus("preview-status", "error", `The preview failed: ${e.message}`);
  } finally {
    $("preview").disabled = false;
  }
}

/** Resolve after `ms`, or reject with an AbortError as soon as `signal` aborts. */
function sleepUnlessAborted(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("aborted", "AbortError"));
    }, { once: true });
  });
}

function showPreview(blob, duration, wanted, container) {
  previewUrls.forEach((u) => URL.revokeObjectURL(u));
  const cutUrl = URL.createObjectURL(blob);
  previewUrls = [cutUrl];
  const status = $("preview-status");
  status.className = duration === null ? "status-error" : "status-ok";
  status.dataset.duration = duration === null ? "" : String(duration);
  status.textContent =
    duration === null
      ? `The cut has no video stream (${formatBytes(blob.size)}). `
      : `Cut: ${formatDuration(duration)} of video (asked for ${formatDuration(wanted)}), ${formatBytes(blob.size)}. `;
  const link = document.createElement("a");
  link.href = cutUrl;
  link.download = `${editor.channel}-${editor.quality}-${formatTime(editor.selection.start).replace(/:/g, "-")}.${container}`;
  link.textContent = "Download";
  status.appendChild(link);
  if (editor.previewHls) editor.previewHls.destroy();
  editor.previewHls = null;
  const video = $("preview-video");
  if (blob.size > PREVIEW_PLAY_MAX_BYTES || duration === null || (container === "ts" && !window.Hls)) {
    $("preview-box").hidden = true;
    return;
  }
  if (container === "mp4") {
    // Browsers play an MP4 file themselves; hls.js is for the MPEG-TS cut.
    video.onerror = () => setStatus("preview-status", "error", "The preview does not play in this browser.");
    $("preview-box").hidden = false;
    video.src = cutUrl;
    return;
  }
  video.onerror = null;
  // One VOD playlist with the whole cut as its only segment.
  const playlist = [
    "#EXTM3U",
    "#EXT-X-VERSION:3",
    `#EXT-X-TARGETDURATION:${Math.ceil(duration)}`,
    "#EXT-X-PLAYLIST-TYPE:VOD",
    `#EXTINF:${duration.toFixed(3)},`,
    cutUrl,
    "#EXT-X-ENDLIST",
    "",
  ].join("\n");
  const playlistUrl = URL.createObjectURL(new Blob([playlist], { type: "application/vnd.apple.mpegurl" }));
  previewUrls.push(playlistUrl);
  const hls = new Hls();
  editor.previewHls = hls;
  hls.on(Hls.Events.ERROR, (event, data) => {
    if (data.fatal) setStatus("preview-status", "error", `The preview does not play: ${data.details}.`);
  });
  $("preview-box").hidden = false;
  hls.loadSource(playlistUrl);
  hls.attachMedia(video);
}

// ---------------------------------------------------------------- jobs

function jobsUrl(path = "", collection = "/jobs") {
  return `${editor.api.replace(/\/+$/, "")}${collection}${path}`;
}

function apiName() {
  return editor.api || `${location.origin} (same origin)`;
}

/**
 * One request to the cutter's API, with the editor's session cookie. Changes
 * always go as JSON: the API refuses anything a plain form could send.
 */
async function callApi(path, options, collection = "/jobs") {
  let response;
  const request = { credentials: "include", ...options };
  if (request.method && request.method !== "GET") {
    request.headers = { "Content-Type": "application/json", ...(request.headers || {}) };
    if (request.body === undefined) request.body = "{}";
  }
  try {
    response = await fetch(jobsUrl(path, collection), request);
  } catch (e) {
    throw new Error(`Cannot reach the cutter API at ${apiName()}: ${e.message}`);
  }
  if (!response.ok) {
    throw new Error(`The cutter API at ${apiName()} answered ${await describeResponse(response)}`);
  }
  return response.json();
}

async function submit(event) {
  event.preventDefault();
  const problem = selectionProblem();
  if (problem) {
    setStatus("submit-status", "error", problem);
    return;
  }
  const title = $("title").value.trim();
  if (!title) {
    setStatus("submit-status", "error", "Give the video a title.");
    return;
  }
  const holes = selectionHoles();
  if (holes.length && !$("allow-holes").checked) {
    setStatus("submit-status", "error", "The selection has holes: tick 'allow holes' to cut it anyway, or change the range.");
    return;
  }
  const location_ = $("upload-location").value.trim();
  const job = {
    channel: editor.channel,
    quality: editor.quality,
    start: formatTime(editor.selection.start),
    end: formatTime(editor.selection.end),
    title,
    description: $("description").value,
    allow_holes: $("allow-holes").checked,
  };
  // Left out when empty: a cutter with a single upload location uses it.
  if (location_) job.upload_location = location_;
  $("submit").disabled = true;
  setStatus("submit-status", "busy", "Submitting…");
  try {
    const created = await callApi("", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(job),
    });
    const id = created && (created.id ?? (created.job && created.job.id));
    setStatus("submit-status", "ok", id !== undefined ? `Submitted as job ${id}.` : "Submitted.");
    localStorage.setItem(LOCATION_STORAGE_KEY, location_);
    refreshJobs();
  } catch (e) {
    setStatus("submit-status", "error", e.message);
  } finally {
    $("submit").disabled = false;
  }
}

let jobsTimer = null;

async function refreshJobs() {
  clearTimeout(jobsTimer);
  const api = editor.api;
  try {
    const answer = await callApi("");
    if (api !== editor.api) return;
    editor.jobs = Array.isArray(answer) ? answer : answer.jobs || [];
    setStatus("jobs-status", "", "");
    renderJobs();
  } catch (e) {
    if (api !== editor.api) return;
    setStatus("jobs-status", "error", `${e.message}. The list will retry; the cutter's address is set under 'Cutter API'.`);
    $("settings").open = true;
  } finally {
    if (api === editor.api) jobsTimer = setTimeout(refreshJobs, JOB_POLL_MS);
  }
}

function cell(row, text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (text instanceof Node) td.appendChild(text);
  else td.textContent = text ?? "";
  row.appendChild(td);
  return td;
}

function jobLink(job) {
  const link = job.video_link;
  if (!link) return null;
  if (/^(https?|file):/i.test(link)) {
    const a = document.createElement("a");
    a.href = link;
    a.textContent = job.video_id || link;
    a.target = "_blank";
    a.rel = "noopener";
    return a;
  }
  return document.createTextNode(link);
}

function renderJobs() {
  const body = $("jobs").tBodies[0];
  const jobs = [...editor.jobs].sort((a, b) => (b.id > a.id ? 1 : b.id < a.id ? -1 : 0));
  if (!jobs.length) {
    const row = document.createElement("tr");
    row.className = "empty";
    cell(row, "No jobs yet.").colSpan = 6;
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(
    ...jobs.map((job) => {
      const row = document.createElement("tr");
      row.dataset.id = job.id;
      row.dataset.state = job.state;
      cell(row, `#${job.id}`);
      cell(row, job.title);
      const start = parseTime(job.start);
      const end = parseTime(job.end);
      const range =
        Number.isNaN(start) || Number.isNaN(end)
          ? `${job.start} → ${job.end}`
          : `${formatTime(start)} → ${formatClock(end)} (${formatDuration((end - start) / 1000)})`;
      cell(row, `${job.channel}/${job.quality} ${range}`, "range-cell");
      const state = document.createElement("span");
      state.className = `state state-${job.state}`;
      state.textContent = job.state;
      cell(row, state);
      const link = jobLink(job);
      if (link) cell(row, link, "link-cell");
      else cell(row, job.error || "", job.error ? "error-cell" : "");
      const actions = cell(row, "");
      if (CANCELLABLE.has(job.state)) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Cancel";
        button.addEventListener("click", () => cancelJob(job.id, button));
        actions.appendChild(button);
      }
      return row;
    }),
  );
}

async function cancelJob(id, button) {
  button.disabled = true;
  try {
    await callApi(`/${encodeURIComponent(id)}/cancel`, { method: "POST" });
    refreshJobs();
  } catch (e) {
    setStatus("jobs-status", "error", e.message);
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- sign-in

/** Show who is signed in (the session is an HttpOnly cookie the page cannot read). */
function renderEditor(name) {
  editor.editorName = name || null;
  $("signed-in").hidden = !name;
  $("sign-in-form").hidden = Boolean(name);
  $("editor-name").textContent = name || "";
  $("submit").title = name ? "" : "Sign in as an editor to submit (the cutter refuses it otherwise)";
}

async function loadSession() {
  const api = editor.api;
  try {
    const answer = await callApi("", undefined, "/session");
    if (api === editor.api) renderEditor(answer && answer.editor);
  } catch (e) {
    if (api === editor.api) renderEditor(null);
  }
}

async function signIn(event) {
  event.preventDefault();
  const token = $("editor-token").value.trim();
  if (!token) {
    setStatus("sign-in-status", "error", "Paste the token your operator gave you.");
    return;
  }
  setStatus("sign-in-status", "busy", "Signing in…");
  try {
    const answer = await callApi("", { method: "POST", body: JSON.stringify({ token }) }, "/session");
    $("editor-token").value = "";
    setStatus("sign-in-status", "", "");
    renderEditor(answer.editor);
    refreshJobs();
  } catch (e) {
    setStatus("sign-in-status", "error", e.message);
  }
}

async function signOut() {
  try {
    await callApi("", { method: "DELETE" }, "/session");
  } catch (e) {
    setStatus("sign-in-status", "error", e.message);
  }
  renderEditor(null);
  refreshJobs();
}

/** Offer the cutter's upload locations; pre-fill the only one. */
async function loadLocations() {
  const api = editor.api;
  try {
    const answer = await callApi("", undefined, "/locations");
    if (api !== editor.api) return;
    const names = (answer && answer.locations) || [];
    $("upload-locations").replaceChildren(
      ...names.map((name) => {
        const option = document.createElement("option");
        option.value = name;
        return option;
      }),
    );
    const input = $("upload-location");
    if (!input.value && names.length === 1) input.value = names[0];
    if (names.length) input.placeholder = names.join(", ");
  } catch (e) {
    // The job list reports an unreachable API; a cutter without /locations is no error.
  }
}

function setApi(base) {
  editor.api = (base || "").trim().replace(/\/+$/, "");
  $("api").value = editor.api;
  $("jobs-source").textContent = `from ${apiName()}`;
  editor.jobs = [];
  $("jobs").tBodies[0].replaceChildren();
  setStatus("jobs-status", "busy", "Loading jobs…");
  refreshJobs();
  loadLocations();
  loadSession();
}

// ---------------------------------------------------------------- wiring

function onKey(event) {
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  const tag = event.target.tagName;
  if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
  let handled = true;
  switch (event.key) {
    case "[":
      markFromPlayhead("start");
      break;
    case "]":
      markFromPlayhead("end");
      break;
    case "ArrowLeft":
      if (event.shiftKey) stepFrames(-1);
      else stepSeconds(-1);
      break;
    case "ArrowRight":
      if (event.shiftKey) stepFrames(1);
      else stepSeconds(1);
      break;
    case ",":
      stepFrames(-1);
      break;
    case ".":
      stepFrames(1);
      break;
    case " ":
      if (tag === "BUTTON") return;
      togglePlay();
      break;
    default:
      handled = false;
  }
  if (handled) event.preventDefault();
}

function wire() {
  document.addEventListener("keydown", onKey);
  $("source").addEventListener("submit", (e) => {
    e.preventDefault();
    loadWindow();
  });
  $("channel").addEventListener("change", async () => {
    if (await loadQualities($("quality").value)) loadWindow();
  });
  $("quality").addEventListener("change", loadWindow);
  $("live").addEventListener("change", () => setLive($("live").checked));
  $("last30").addEventListener("click", () => {
    setLive(true);
    $("window-start").value = formatTime(Date.now() - DEFAULT_WINDOW_MS);
    loadWindow();
  });
  for (const button of document.querySelectorAll("[data-step]")) {
    button.addEventListener("click", () => stepSeconds(Number(button.dataset.step)));
  }
  for (const button of document.querySelectorAll("[data-frames]")) {
    button.addEventListener("click", () => stepFrames(Number(button.dataset.frames)));
  }
  $("play").addEventListener("click", togglePlay);
  $("set-start").addEventListener("click", () => markFromPlayhead("start"));
  $("set-end").addEventListener("click", () => markFromPlayhead("end"));
  $("goto-start").addEventListener("click", () => editor.selection.start !== null && seekToBroadcast(editor.selection.start));
  $("goto-end").addEventListener("click", () => editor.selection.end !== null && seekToBroadcast(editor.selection.end));
  $("play-selection").addEventListener("click", playSelection);
  $("cut-start").addEventListener("change", () => onSelectionTyped("start"));
  $("cut-end").addEventListener("change", () => onSelectionTyped("end"));
  $("allow-holes").addEventListener("change", renderSelection);
  $("preview").addEventListener("click", preview);
  $("submit-form").addEventListener("submit", submit);
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("api-form").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem(API_STORAGE_KEY, $("api").value.trim());
    setApi($("api").value);
  });
  $("timeline").addEventListener("click", (e) => {
    const extent = timelineExtent();
    if (!extent) return;
    const box = e.currentTarget.getBoundingClientRect();
    seekToBroadcast(extent.from + ((e.clientX - box.left) / box.width) * (extent.to - extent.from));
  });
  for (const name of ["timeupdate", "seeked", "play", "pause", "loadedmetadata"]) {
    video.addEventListener(name, renderPlayhead);
  }
  video.addEventListener("timeupdate", checkStopAt);
  video.addEventListener("play", () => clearMessage("autoplay"));
  // Any other way of pausing or seeking ends "Play selection".
  video.addEventListener("pause", () => {
    editor.stopAt = null;
  });
  watchFrames();
  // Keep a live window's timeline moving even while paused.
  setInterval(() => editor.windowEnd === null && editor.segments.length && render(), 5000);
}

async function init() {
  const params = new URLSearchParams(location.search);
  wire();
  setApi(params.has("api") ? params.get("api") : localStorage.getItem(API_STORAGE_KEY) || "");
  $("upload-location").value = params.get("location") || localStorage.getItem(LOCATION_STORAGE_KEY) || "";
  const start = parseTime(params.get("start"));
  const end = parseTime(params.get("end"));
  if (Number.isNaN(start)) {
    setLive(true);
    $("window-start").value = formatTime(Date.now() - DEFAULT_WINDOW_MS);
    if (params.get("start")) showMessage("window", "warn", `Ignored the start in the address (${params.get("start")}): showing the last 30 minutes.`);
  } else {
    $("window-start").value = formatTime(start);
    setLive(Number.isNaN(end));
    if (!Number.isNaN(end)) $("window-end").value = formatTime(end);
  }
  if (await loadChannels(params.get("channel"), params.get("quality"))) await loadWindow();
}

init();
