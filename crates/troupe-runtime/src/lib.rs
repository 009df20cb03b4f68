//! Python runtime, runtime client, runtime launcher.
