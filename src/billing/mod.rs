//! Billing: immutable statements whose balances are summed from an append-only ledger,
//! payments that are never charged twice nor overdraw (written before the gateway is
//! called, settled once, reconciled when the gateway's answer was lost), and insurance
//! coverage with eligibility checks. Who may do what is `access::billing`'s decision.
pub mod gateway;
pub mod graphql;
pub mod service;

use std::time::Duration;

use crate::state::AppState;

/// How often the server settles payments whose gateway answer was lost.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// Settle what the gateway knows about PENDING payments older than a minute, now and then
/// every [`RECONCILE_EVERY`], for as long as the process runs.
pub fn start_reconciler(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        loop {
            tick.tick().await;
            let Ok(gw) = state.service::<graphql::Gateways>() else {
                return;
            };
            match service::reconcile(
                &state.db,
                gw.payments.as_ref(),
                chrono::TimeDelta::minutes(1),
                chrono::TimeDelta::minutes(10),
            )
            .await
            {
                Ok(r) if r.succeeded + r.declined > 0 => {
                    tracing::info!(
                        succeeded = r.succeeded,
                        declined = r.declined,
                        pending = r.still_pending,
                        "payments reconciled"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "payment reconciliation failed"),
            }
        }
    });
}
