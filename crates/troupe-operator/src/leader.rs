//! Leader election over a `coordination.k8s.io/v1` Lease, the way client-go does it: the
//! holder renews `renewTime` every retry period; another operator takes the lease once
//! `renewTime + leaseDurationSeconds` has passed (or the holder released it on shutdown).
//! Every write is a replace carrying the `resourceVersion` read, so of two operators
//! racing for an expired lease exactly one wins (the other gets 409 Conflict).
//!
//! A holder that cannot renew for a whole lease duration, or finds another holder, stops
//! (as controller-runtime does): the process exits and comes back as a standby.
//! docs/decisions.md "Operator leader election" says why this is not a crate.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;

use crate::config::LeaseSettings;
use crate::error::{is_conflict, OperatorError};

/// One operator's side of the election.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

impl Elector {
    /// Elects over lease `settings.namespace/settings.name`.
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    /// This operator's identity.
    pub fn identity(&self) -> &str {
        &self.settings.identity
    }

    fn lease_name(&self) -> String {
        format!("{}/{}", self.settings.namespace, self.settings.name)
    }

    /// One attempt: `true` when this operator holds the lease afterwards.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let duration = i32::try_from(self.settings.duration.as_secs()).unwrap_or(i32::MAX);
        let me = self.settings.identity.clone();
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(me.as_str());
        if holder.is_some() && !mine && !expired(&spec, now) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(duration),
            acquire_time: if mine {
                spec.acquire_time
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
            ..spec
        });
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this operator holds the lease (a standby waits here).
    pub async fn acquire(&self) {
        let mut logged = false;
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(lease = %self.lease_name(), identity = %self.settings.identity, "leading");
                    return;
                }
                Ok(false) if !logged => {
                    tracing::info!(lease = %self.lease_name(), "another operator leads; standing by");
                    logged = true;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %self.lease_name(), error = %e, "cannot read or write the leader lease")
                }
            }
            tokio::time::sleep(self.settings.retry).await;
        }
    }

    /// Renews the lease every retry period; returns why leadership ended.
    pub async fn keep(&self) -> OperatorError {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry).await;
            match self.try_acquire().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    return OperatorError::LostLease {
                        lease: self.lease_name(),
                        message: "another operator holds it".to_owned(),
                    }
                }
                Err(e) if renewed.elapsed() >= self.settings.duration => {
                    return OperatorError::LostLease {
                        lease: self.lease_name(),
                        message: format!("not renewed for {:?}: {e}", self.settings.duration),
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.lease_name(), error = %e, "cannot renew the leader lease; retrying")
                }
            }
        }
    }

    /// Gives the lease up (when still ours), so a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(e) = self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(lease = %self.lease_name(), error = %e, "cannot release the leader lease; a standby takes over when it expires");
        }
    }
}

/// Whether the holder let `spec` lapse at `now`.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    renewed
        .0
        .checked_add(SignedDuration::from_secs(i64::from(secs)))
        .is_ok_and(|until| until < now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration_from_the_last_renewal() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let spec = LeaseSpec {
            renew_time: Some(MicroTime(t0)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        assert!(!expired(&spec, at(10)));
        assert!(!expired(&spec, at(15)));
        assert!(expired(&spec, at(16)));
        assert!(expired(&LeaseSpec::default(), t0), "never renewed: free");
    }
}
