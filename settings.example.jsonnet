// This node's settings: copy to settings.jsonnet (git ignores it), edit, then
// run ./generate-docker-compose. Only what differs from the defaults at the top
// of docker-compose.jsonnet (which explains every setting) goes here; objects
// merge with the defaults, anything else replaces them.
{
  node_name: 'east',
  public_url: 'https://east.example.org',
  // The certificate of public_url's name; null for plain HTTP on a private network.
  tls: {
    certificate: '/etc/letsencrypt/live/east.example.org/fullchain.pem',
    key: '/etc/letsencrypt/live/east.example.org/privkey.pem',
  },
  channels: ['desertbus'],
  qualities: ['source', '480p'],
  peers: ['https://west.example.org'],
  upload_locations: {
    'local': { type: 'local', path: '/var/lib/streamvault/uploads' },
  },
  // image_tag: '3f9c2ab',   // default: the tag of the last ./build here
  // enabled: { grafana: false },
}
