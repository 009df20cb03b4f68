//! Google Cloud Pub/Sub transport (platform.md §1.2). Work in progress: the REST client
//! lands in the next commit.
