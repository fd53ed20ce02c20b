"""streamvault restreamer: serve a node's store over HTTP: listings, segments, playlists, cuts."""
