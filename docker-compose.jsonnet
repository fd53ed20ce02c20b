// One streamvault node as a docker-compose file.
//
// Edit the settings below, then run ./generate-docker-compose (it writes
// docker-compose.yml) and `docker compose up -d`. docs/OPERATIONS.md explains
// running several nodes, adding a peer, the backdoor and the dashboard.

local settings = {
  // Image names are image_prefix + SERVICE + ':' + image_tag. ./build prints the
  // tag of the images it built (the git commit); use the same prefix as it did.
  image_prefix: 'streamvault/',
  image_tag: 'latest',

  // This node's name: a label on its metrics, and the cutter's name on the jobs it
  // claims (so it must differ between nodes sharing a database).
  node_name: 'node1',

  // The URL at which this node's front (nginx, below) is reached by people and by
  // other nodes. Links to videos uploaded to a 'local' location start with it.
  public_url: 'http://localhost',

  // Channels to record: 'NAME' for a Twitch channel, or 'NAME=URL' for any HLS
  // master or media playlist (a media playlist is recorded as quality 'source').
  channels: ['desertbus'],

  // Qualities to record, as the downloader names them: 'source' is the best one,
  // others are named by height ('720p', '480p', ...).
  qualities: ['source', '480p'],

  // The segment store on the host. Every service mounts it at /mnt/store; keep it
  // on a disk with room for the whole event (a 6 Mbit/s source is ~2.7 GB an hour).
  store_path: '/var/lib/streamvault/segments',

  // Ports published on the host. 'http' is the node's front door (nginx), for
  // editors and for peers backfilling from this node. The others are published on
  // 127.0.0.1 only, for the operator (reach them through an SSH tunnel). null = not
  // published.
  ports: {
    http: 80,
    prometheus: 9090,
    grafana: 3000,
    postgres: null,  // publish the bundled database, e.g. 5432, for other nodes' cutters
  },

  // Other nodes to backfill from: their public_url (the backfiller reads their
  // /files listings and /segments through their nginx).
  peers: [],

  // Optional: a file on the host listing peers, one 'NAME URL' or 'URL' a line ('#'
  // starts a comment). The backfiller re-reads it while running, so a peer can be
  // added or removed without a restart. null = only the peers above.
  peer_file: null,

  // How far back to backfill: a number of hours before now, or an ISO 8601 time.
  // null = everything the peers have.
  backfill_start: null,

  // Port of each service's backdoor (a Python shell) inside its container, bound
  // to 127.0.0.1 there: `docker compose exec restreamer telnet 127.0.0.1 1234`.
  // 0 = off.
  backdoor_port: 1234,

  // Log level of every streamvault service (DEBUG, INFO, WARNING, ERROR).
  log_level: 'INFO',

  // The PostgreSQL database holding cut jobs. All nodes' cutters must share one.
  // bundled: true runs a 'postgres' service on this node with the password and data
  // directory below (other nodes then use a dsn pointing here, with ports.postgres
  // published). bundled: false uses dsn, a libpq connection string such as
  // 'host=db.example.org dbname=streamvault user=streamvault password=...'.
  database: {
    bundled: true,
    password: 'change-me',
    data_path: '/var/lib/streamvault/postgres',
    dsn: null,
  },

  // Where the cutter uploads finished videos. Each entry NAME: {...} is one upload
  // location that jobs name:
  //   {type: 'local', path: HOST_DIR}: files in a directory, linked as
  //     public_url/uploads/NAME/FILE (nginx serves them);
  //   {type: 'youtube', credentials: HOST_FILE}: a YouTube channel, with an OAuth
  //     client id, secret and refresh token in a JSON file.
  upload_locations: {
    'local': { type: 'local', path: '/var/lib/streamvault/uploads' },
  },

  // Which services run on this node. 'postgres' follows database.bundled.
  enabled: {
    downloader: true,
    restreamer: true,
    backfiller: true,
    cutter: true,
    nginx: true,
    prometheus: true,
    grafana: true,
  },
};

// ---------------------------------------------------------------------------
// Services. Nothing below needs editing to deploy a node.

// Default ports inside the containers (DESIGN §2).
local PORTS = { restreamer: 8000, downloader: 8001, backfiller: 8002, cutter: 8003 };
local STORE = '/mnt/store';
local UPLOADS = '/mnt/uploads';

// docker-compose substitutes ${VAR} in every string; '$$' is a literal '$'.
local escape(s) = std.strReplace(s, '$', '$$');

// Deep merge for overriding settings: objects merge, anything else replaces.
local merge(a, b) =
  if std.isObject(a) && std.isObject(b) then
    a + { [k]: if std.objectHas(a, k) then merge(a[k], b[k]) else b[k] for k in std.objectFields(b) }
  else b;

local compose(s) = {
  local channel_names = [std.split(c, '=')[0] for c in s.channels],
  local db_dsn =
    if s.database.bundled
    then 'host=postgres dbname=streamvault user=streamvault password=' + s.database.password
    else s.database.dsn,
  local enabled = s.enabled { postgres: s.database.bundled },
  assert s.database.bundled || s.database.dsn != null || !enabled.cutter
         : 'database: set dsn, or bundled: true',

  // Flags every streamvault service shares.
  local streamvault(name, args, extra={}) = {
    image: s.image_prefix + name + ':' + s.image_tag,
    command: args + ['--backdoor-port', std.toString(s.backdoor_port)],
    environment: { STREAMVAULT_LOG_LEVEL: s.log_level },
    volumes: ['%s:%s' % [s.store_path, STORE]],
    restart: 'unless-stopped',
    // run_service stops within STOP_TIMEOUT (5 s); leave room for a rename.
    stop_grace_period: '15s',
  } + extra,

  local location_flag(name, loc) =
    if loc.type == 'local' then
      '%s=local:%s/%s,url_prefix=%s/uploads/%s/' % [name, UPLOADS, name, s.public_url, name]
    else if loc.type == 'youtube' then
      '%s=youtube:/etc/streamvault/%s.json' % [name, name]
    else error 'upload location %s: unknown type %s' % [name, loc.type],
  local location_volume(name, loc) =
    if loc.type == 'local' then '%s:%s/%s' % [loc.path, UPLOADS, name]
    else '%s:/etc/streamvault/%s.json:ro' % [loc.credentials, name],
  local locations = [
    { name: name } + s.upload_locations[name]
    for name in std.objectFields(s.upload_locations)
  ],

  local all_services = {
    downloader: streamvault('downloader', s.channels + [
      '--qualities', std.join(',', s.qualities),
      '--base-dir', STORE,
      '--metrics-port', std.toString(PORTS.downloader),
    ]),

    restreamer: streamvault('restreamer', [
      '--base-dir', STORE,
      '--host', '0.0.0.0',
      '--port', std.toString(PORTS.restreamer),
    ]),

    backfiller: streamvault('backfiller', [
      '--base-dir', STORE,
      '--channels', std.join(',', channel_names),
      '--qualities', std.join(',', s.qualities),
      '--metrics-port', std.toString(PORTS.backfiller),
    ] + (if s.peers != [] then ['--nodes', std.join(',', s.peers)] else [])
      + (if s.peer_file != null then ['--node-file', '/etc/streamvault/peers'] else [])
      + (if s.backfill_start != null then ['--start', std.toString(s.backfill_start)] else []), {
      volumes+: if s.peer_file != null then ['%s:/etc/streamvault/peers:ro' % s.peer_file] else [],
    }),

    cutter: streamvault('cutter', [
      'run',
      '--db', db_dsn,
      '--base-dir', STORE,
      '--name', s.node_name,
      '--metrics-port', std.toString(PORTS.cutter),
    ] + std.flattenArrays([['--location', location_flag(l.name, l)] for l in locations]), {
      volumes+: [location_volume(l.name, l) for l in locations],
      [if s.database.bundled then 'depends_on']: ['postgres'],
    }),

    postgres: {
      image: 'postgres:15',
      environment: {
        POSTGRES_USER: 'streamvault',
        POSTGRES_DB: 'streamvault',
        POSTGRES_PASSWORD: escape(s.database.password),
      },
      volumes: ['%s:/var/lib/postgresql/data' % s.database.data_path],
      restart: 'unless-stopped',
      [if s.ports.postgres != null then 'ports']: ['%d:5432' % s.ports.postgres],
    },

    nginx: {
      image: 'nginx:1.27',
      // The config travels in the environment, so this one generated file is the
      // whole deployment; written out at start.
      command: [
        'sh', '-c',
        'printf "%s" "$$NGINX_CONF" > /etc/nginx/nginx.conf && exec nginx -g "daemon off;"',
      ],
      environment: { NGINX_CONF: escape($.nginx_conf) },
      volumes: ['%s:%s:ro' % [s.store_path, STORE]] + [
        '%s:%s/%s:ro' % [l.path, UPLOADS, l.name]
        for l in locations
        if l.type == 'local'
      ],
      ports: ['%d:80' % s.ports.http],
      restart: 'unless-stopped',
      depends_on: [n for n in ['restreamer', 'cutter'] if enabled[n]],
    },

    prometheus: {
      image: 'prom/prometheus:v2.55.1',
      entrypoint: [
        '/bin/sh', '-c',
        'printf "%s" "$$PROMETHEUS_CONFIG" > /tmp/prometheus.yml && exec /bin/prometheus ' +
        '--config.file=/tmp/prometheus.yml --storage.tsdb.path=/prometheus ' +
        '--storage.tsdb.retention.time=30d',
      ],
      environment: { PROMETHEUS_CONFIG: escape($.prometheus_config) },
      volumes: ['prometheus:/prometheus'],
      restart: 'unless-stopped',
      [if s.ports.prometheus != null then 'ports']: ['127.0.0.1:%d:9090' % s.ports.prometheus],
    },

    grafana: {
      image: 'grafana/grafana-oss:11.3.0',
      // Provisioned with Prometheus as its data source and the streamvault
      // dashboard (monitoring/dashboard.jsonnet, rendered by ./generate-docker-compose).
      volumes: [
        './monitoring/grafana:/etc/grafana/provisioning:ro',
        './monitoring/generated:/var/lib/grafana/streamvault-dashboards:ro',
        'grafana:/var/lib/grafana',
      ],
      restart: 'unless-stopped',
      depends_on: ['prometheus'],
      [if s.ports.grafana != null then 'ports']: ['127.0.0.1:%d:3000' % s.ports.grafana],
    },
  },

  services: { [name]: all_services[name] for name in std.objectFields(all_services) if enabled[name] },

  volumes: {
    [if enabled.prometheus then 'prometheus']: {},
    [if enabled.grafana then 'grafana']: {},
  },

  // The nginx front: segments straight from the store (they are immutable: the name
  // carries the hash), uploaded videos of local locations, the cutter's job API, and
  // everything else (listings, playlists, cuts, the editor) from the restreamer.
  nginx_conf:: |||
    worker_processes auto;
    error_log stderr warn;
    events { worker_connections 1024; }
    http {
      include /etc/nginx/mime.types;
      default_type application/octet-stream;
      sendfile on;
      tcp_nopush on;
      access_log /dev/stdout;
      # Docker's DNS; resolving per request keeps nginx up while a service restarts.
      resolver 127.0.0.11 valid=10s ipv6=off;
      server {
        listen 80;
        set $restreamer restreamer:%(restreamer)d;
        set $cutter cutter:%(cutter)d;
        location /segments/ {
          alias %(store)s/;
          # Like the restreamer: dotfiles are invisible, temp files are unfinished.
          location ~ /\. { return 403; }
          location ~ -temp- { return 404; }
          # The two containers the store holds, typed as the restreamer types them.
          types { video/mp2t ts; video/mp4 mp4; }
          default_type application/octet-stream;
          add_header Cache-Control "public, max-age=31536000, immutable";
          add_header Access-Control-Allow-Origin *;
        }
        location /uploads/ {
          alias %(uploads)s/;
          location ~ /\. { return 403; }
        }
        # The cutter's job API, for the editor page on the same origin.
        location ~ ^/(jobs|locations)(/|$) {
          proxy_pass http://$cutter;
          proxy_set_header Host $host;
          proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
        location / {
          proxy_pass http://$restreamer;
          proxy_set_header Host $host;
          proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
          # Cuts and live playlists stream: pass bytes on as they come.
          proxy_buffering off;
          proxy_read_timeout 600s;
        }
      }
    }
  ||| % { restreamer: PORTS.restreamer, cutter: PORTS.cutter, store: STORE, uploads: UPLOADS },

  // Prometheus scrapes every streamvault service of this node.
  prometheus_config:: std.manifestYamlDoc({
    global: { scrape_interval: '15s', evaluation_interval: '15s' },
    scrape_configs: [
      {
        job_name: name,
        static_configs: [{
          targets: ['%s:%d' % [name, PORTS[name]]],
          labels: { node: s.node_name },
        }],
      }
      for name in ['downloader', 'restreamer', 'backfiller', 'cutter']
      if enabled[name]
    ],
  }),

  // For tests and tools: this file with some settings changed, e.g.
  // (import 'docker-compose.jsonnet').with({ enabled: { grafana: false } }).
  with(overrides):: compose(merge(s, overrides)),
  settings:: s,
};

compose(settings)
