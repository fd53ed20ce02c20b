"""streamvault backfiller: fill a node's store from its peers, verifying every byte."""
