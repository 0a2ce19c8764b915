//! Registering with the SIP trunk, so it routes to us and lets us call out.
//!
//! rsipstack's `Registration::keep_alive` does the work: REGISTER now, answer the
//! 401/407 digest challenge, refresh at 75% of the granted expiry, back off on
//! failure. We add the words an operator needs when it fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::registration::{RefreshOutcome, Registration};
use rsipstack::sip::Uri;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::TrunkConfig;
use crate::sip::stack::SipStack;

/// Start registering with the trunk until `stop` fires; `state` is true while
/// the trunk holds our registration (for `/metrics` and `/status`).
pub(crate) fn spawn(
    stack: &SipStack,
    trunk: TrunkConfig,
    stop: CancellationToken,
    state: Arc<AtomicBool>,
) {
    let endpoint = stack.dialogs.endpoint.clone();
    let (Some(username), Some(password)) = (trunk.username.clone(), trunk.password.clone()) else {
        error!("trunk registration needs a username and a password; not registering");
        return;
    };
    let server = match Uri::try_from(format!("sip:{}", trunk.proxy).as_str()) {
        Ok(u) => u,
        Err(e) => {
            error!(proxy = %trunk.proxy, "cannot register: bad trunk proxy: {e}");
            return;
        }
    };
    let credential = Credential {
        username,
        password,
        realm: None,
        auth_username: None,
    };
    let expires = u32::try_from(trunk.register_expires_s).unwrap_or(600);
    tokio::spawn(async move {
        let mut reg = Registration::new(endpoint, Some(credential));
        let mut registered = false;
        reg.keep_alive(server, expires, stop, |outcome| {
            let now = matches!(outcome, RefreshOutcome::Registered(_));
            state.store(now, Ordering::Relaxed);
            match outcome {
            RefreshOutcome::Registered(_) => {
                if !registered {
                    info!(proxy = %trunk.proxy, "registered with the SIP trunk");
                }
                registered = true;
            }
            RefreshOutcome::Rejected(resp) => {
                registered = false;
                error!(
                    proxy = %trunk.proxy,
                    status = %resp.status_code,
                    "the SIP trunk REFUSED our registration: volunteers' mobiles cannot be called until this is fixed (check [trunk] username and password)"
                );
            }
            RefreshOutcome::Failed(e) => {
                registered = false;
                error!(
                    proxy = %trunk.proxy,
                    "cannot reach the SIP trunk to register ({e}); volunteers' mobiles cannot be called; retrying"
                );
            }
        }})
        .await;
    });
}
