"""streamvault downloader: record live HLS streams as segment files."""
