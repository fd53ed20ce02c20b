// The streamvault Grafana dashboard: what an operator watches during an event.
//
// Rendered to monitoring/generated/streamvault.json by ./generate-docker-compose;
// Grafana (in docker-compose) loads it from there. Every query reads metrics the
// services export (tests/deploy checks the names against a running node, and
// PromQL syntax with promtool). Rows, top to bottom:
//   live:        how far behind live each channel/quality is, segments downloaded
//                vs backfilled, holes (partial and suspect segments);
//   cutting:     cut and upload latency, jobs by outcome;
//   health:      errors and warnings logged, by service; HTTP errors.

local ds = { type: 'prometheus', uid: '${datasource}' };

// A time-series panel; `targets` are [expr, legend] pairs.
local panel(title, description, targets, unit='short', stack=false) = {
  type: 'timeseries',
  title: title,
  description: description,
  datasource: ds,
  fieldConfig: {
    defaults: {
      unit: unit,
      custom: { stacking: { mode: if stack then 'normal' else 'none' }, fillOpacity: if stack then 30 else 0 },
    },
    overrides: [],
  },
  options: { legend: { displayMode: 'table', placement: 'bottom', calcs: ['lastNotNull', 'max'] } },
  targets: [
    { datasource: ds, expr: t[0], legendFormat: t[1], refId: std.char(65 + i) }
    for i in std.range(0, std.length(targets) - 1)
    for t in [targets[i]]
  ],
};

local row(title) = { type: 'row', title: title, collapsed: false, panels: [] };

// Filters every query shares (template variables below).
local sel = 'node=~"$node"';
local chsel = sel + ', channel=~"$channel"';

local rows = [
  [row('Recording')],
  [
    panel(
      'Behind live',
      'Seconds between now and the end of the newest segment recorded, per channel and quality. ' +
      'Climbing steadily: the downloader is stuck or the stream is offline.',
      [['time() - max by (node, channel, quality) (downloader_latest_segment_end_timestamp_seconds{%s})' % chsel,
        '{{node}} {{channel}}/{{quality}}']],
      unit='s',
    ),
    panel(
      'Segments downloaded vs backfilled',
      'Segments per minute written by the downloader, and fetched from peers by the backfiller. ' +
      'Backfill should be near zero when every node is healthy; a burst means a node caught up.',
      [
        ['sum by (node, channel, quality) (rate(downloader_segments_total{%s}[$__rate_interval])) * 60' % chsel,
         'downloaded {{node}} {{channel}}/{{quality}}'],
        ['sum by (node, channel, quality) (rate(backfiller_segments_total{%s}[$__rate_interval])) * 60' % chsel,
         'backfilled {{node}} {{channel}}/{{quality}}'],
      ],
      unit='short',
    ),
    panel(
      'Holes',
      'Segments per minute recorded incompletely (partial: the download broke; suspect: complete ' +
      'by length but untrustworthy). Each may leave a hole unless a peer has a full copy.',
      [['sum by (node, channel, quality, type) (rate(downloader_segments_total{%s, type!="full"}[$__rate_interval])) * 60' % chsel,
        '{{type}} {{node}} {{channel}}/{{quality}}']],
      stack=true,
    ),
  ],
  [row('Cutting')],
  [
    panel(
      'Cut latency',
      'Seconds to cut one job (median and 95th percentile), per upload location.',
      [
        ['histogram_quantile(0.5, sum by (le, location) (rate(cutter_cut_latency_bucket{%s}[$__rate_interval])))' % sel,
         'p50 {{location}}'],
        ['histogram_quantile(0.95, sum by (le, location) (rate(cutter_cut_latency_bucket{%s}[$__rate_interval])))' % sel,
         'p95 {{location}}'],
      ],
      unit='s',
    ),
    panel(
      'Upload latency',
      'Seconds to upload one cut video (median and 95th percentile), per upload location.',
      [
        ['histogram_quantile(0.5, sum by (le, location) (rate(cutter_upload_latency_bucket{%s}[$__rate_interval])))' % sel,
         'p50 {{location}}'],
        ['histogram_quantile(0.95, sum by (le, location) (rate(cutter_upload_latency_bucket{%s}[$__rate_interval])))' % sel,
         'p95 {{location}}'],
      ],
      unit='s',
    ),
    panel(
      'Jobs',
      'Cut jobs per minute: claimed, uploaded (by the state left in), and failed (EDITED: will be ' +
      'retried; UNEDITED: a person must look; FINALIZING: an operator must check the video).',
      [
        ['sum by (node, location) (rate(cutter_jobs_claimed_total{%s}[$__rate_interval])) * 60' % sel,
         'claimed {{location}} ({{node}})'],
        ['sum by (node, location, state) (rate(cutter_jobs_uploaded_total{%s}[$__rate_interval])) * 60' % sel,
         'uploaded, {{state}} {{location}} ({{node}})'],
        ['sum by (node, location, state) (rate(cutter_jobs_failed_total{%s}[$__rate_interval])) * 60' % sel,
         'failed, {{state}} {{location}} ({{node}})'],
      ],
      stack=true,
    ),
  ],
  [row('Health')],
  [
    panel(
      'Errors and warnings',
      'Log lines per minute at WARNING or above, by service (job) and logger. A spike names ' +
      'the part that is struggling; its logs say why.',
      [['sum by (node, job, level, logger) (rate(log_messages_total{%s, level=~"WARNING|ERROR|CRITICAL"}[$__rate_interval])) * 60' % sel,
        '{{job}} {{level}} {{logger}} ({{node}})']],
      stack=true,
    ),
    panel(
      'HTTP errors',
      'Responses per minute with a 4xx or 5xx status, by service and endpoint. 5xx are bugs.',
      [['sum by (node, job, endpoint, status) (rate(http_request_latency_all_count{%s, status=~"[45].."}[$__rate_interval])) * 60' % sel,
        '{{job}} {{endpoint}} {{status}} ({{node}})']],
      stack=true,
    ),
    panel(
      'Services up',
      'Whether Prometheus reaches each service (1 = up).',
      [['up{%s}' % sel, '{{job}} ({{node}})']],
    ),
  ],
];

// Lay rows out on Grafana's 24-column grid: a row header, then up to three panels.
local PANEL_HEIGHT = 8;
local laid = std.foldl(
  function(acc, group)
    local height = if group[0].type == 'row' then 1 else PANEL_HEIGHT;
    local width = if group[0].type == 'row' then 24 else std.floor(24 / std.length(group));
    {
      y: acc.y + height,
      panels: acc.panels + [
        group[i] { id: std.length(acc.panels) + i + 1, gridPos: { x: i * width, y: acc.y, w: width, h: height } }
        for i in std.range(0, std.length(group) - 1)
      ],
    },
  rows,
  { y: 0, panels: [] },
);

local variable(name, query) = {
  name: name,
  type: 'query',
  datasource: ds,
  query: { query: query, refId: name },
  definition: query,
  includeAll: true,
  multi: true,
  allValue: '.*',
  current: { text: 'All', value: '$__all' },
  refresh: 2,
  sort: 1,
};

{
  uid: 'streamvault',
  title: 'streamvault',
  description: 'Recording, replication and cutting on every node.',
  tags: ['streamvault'],
  timezone: 'utc',
  schemaVersion: 39,
  refresh: '30s',
  time: { from: 'now-6h', to: 'now' },
  editable: false,
  templating: {
    list: [
      {
        name: 'datasource',
        type: 'datasource',
        query: 'prometheus',
        current: { text: 'Prometheus', value: 'prometheus' },
      },
      variable('node', 'label_values(up, node)'),
      variable('channel', 'label_values(downloader_segments_total, channel)'),
    ],
  },
  panels: laid.panels,
}
