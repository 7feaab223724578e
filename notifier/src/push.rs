//! The push channels a process runs: those configured, and only those.

use std::sync::Arc;

use crate::apns::{ApnsChannel, ApnsConfig, ApnsSetupError};
use crate::channel::Channel;
use crate::fcm::{FcmChannel, FcmConfig, FcmSetupError};

#[derive(Debug, thiserror::Error)]
pub enum PushSetupError {
    #[error("APNs: {0}")]
    Apns(#[from] ApnsSetupError),
    #[error("FCM: {0}")]
    Fcm(#[from] FcmSetupError),
}

/// APNs if `[apns]` names a key file, FCM if `[fcm]` names a project and a
/// service account; a half-configured channel is an error naming the setting.
pub fn channels(apns: &ApnsConfig, fcm: &FcmConfig) -> Result<Vec<Arc<dyn Channel>>, PushSetupError> {
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    if apns.is_configured() {
        channels.push(Arc::new(ApnsChannel::from_config(apns)?));
    }
    if fcm.is_configured() {
        channels.push(Arc::new(FcmChannel::from_config(fcm)?));
    } else if !fcm.project_id.trim().is_empty() {
        return Err(FcmSetupError::NoServiceAccount.into());
    }
    Ok(channels)
}
