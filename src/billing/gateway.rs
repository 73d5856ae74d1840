//! The payment gateway and the payer (eligibility) adapter, each behind a trait, with the
//! deterministic sandboxes that ship. The sandbox gateway keeps its own side of every
//! charge (`sandbox_charges`, as a real gateway would on its servers), keyed by the
//! idempotency key Caregraph passes, so a repeated key is answered from its records and
//! never charged twice, and reconciliation can ask what happened to a charge whose answer
//! was lost.
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use sea_orm::{DatabaseConnection, EntityTrait, Set};

use crate::error::{AppError, AppResult};
use entity::sandbox_charges;

/// What the gateway says about a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charge {
    Approved { reference: String },
    Declined,
}

#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Charge `amount_cents` to the payment method `token`, once per `key`: the same key
    /// again gets the first answer, without a second charge. `Ok(None)` when no answer came
    /// in time (the charge may or may not have happened: ask [`PaymentGateway::lookup`]).
    async fn charge(&self, key: &str, amount_cents: i64, token: &str) -> AppResult<Option<Charge>>;
    /// What became of the charge made with `key`; `None` if the gateway never saw it.
    async fn lookup(&self, key: &str) -> AppResult<Option<Charge>>;
}

/// The sandbox: approves `tok_sandbox_approve`, declines `tok_sandbox_decline`, and for
/// `tok_sandbox_timeout` charges but answers too late (the caller's wait runs out), the
/// case reconciliation exists for. Any other token is declined.
pub struct Sandbox {
    db: DatabaseConnection,
    /// How long a caller waits for an answer.
    pub wait: Duration,
}

pub const APPROVE: &str = "tok_sandbox_approve";
pub const DECLINE: &str = "tok_sandbox_decline";
pub const TIMEOUT: &str = "tok_sandbox_timeout";

impl Sandbox {
    pub fn new(db: DatabaseConnection) -> Self {
        Sandbox {
            db,
            wait: Duration::from_secs(2),
        }
    }

    async fn record(&self, key: &str, amount_cents: i64, token: &str) -> AppResult<Charge> {
        if let Some(c) = self.lookup(key).await? {
            return Ok(c);
        }
        let approved = matches!(token, APPROVE | TIMEOUT);
        let reference = format!("sbx_{}", uuid::Uuid::new_v4().simple());
        let row = sandbox_charges::ActiveModel {
            key: Set(key.to_owned()),
            amount_cents: Set(amount_cents),
            outcome: Set(if approved { "APPROVED" } else { "DECLINED" }.into()),
            reference: Set(reference.clone()),
            created_at: Set(Utc::now()),
        };
        // A concurrent charge with the same key loses the insert and reads the winner's.
        if sandbox_charges::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .is_err()
        {
            return self
                .lookup(key)
                .await?
                .ok_or_else(|| AppError::internal_msg("sandbox charge vanished"));
        }
        Ok(if approved {
            Charge::Approved { reference }
        } else {
            Charge::Declined
        })
    }
}

#[async_trait::async_trait]
impl PaymentGateway for Sandbox {
    async fn charge(&self, key: &str, amount_cents: i64, token: &str) -> AppResult<Option<Charge>> {
        let charged = self.record(key, amount_cents, token).await?;
        if token == TIMEOUT {
            // Charged on the gateway's side, but the answer does not arrive in time.
            tokio::time::sleep(self.wait).await;
            return Ok(None);
        }
        Ok(Some(charged))
    }

    async fn lookup(&self, key: &str) -> AppResult<Option<Charge>> {
        let row = sandbox_charges::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?;
        Ok(row.map(|r| match r.outcome.as_str() {
            "APPROVED" => Charge::Approved {
                reference: r.reference,
            },
            _ => Charge::Declined,
        }))
    }
}

/// Eligibility as a payer reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eligibility {
    /// ACTIVE, INACTIVE or UNKNOWN.
    pub status: &'static str,
    pub plan_name: Option<String>,
    pub copay_cents: Option<i64>,
}

/// A payer's eligibility service (an X12 270/271 exchange comes with the interoperability
/// work).
#[async_trait::async_trait]
pub trait PayerAdapter: Send + Sync {
    async fn eligibility(
        &self,
        payer: &str,
        plan_name: &str,
        member_id: &str,
        on: NaiveDate,
        effective: (NaiveDate, Option<NaiveDate>),
    ) -> AppResult<Eligibility>;
}

/// The deterministic sandbox payer: a member id starting `INACTIVE` is inactive, one
/// starting `UNKNOWN` unknown to the payer; otherwise the coverage is active within its
/// effective dates, with a copay derived from the member id (so the same member always
/// gets the same answer).
pub struct SandboxPayer;

#[async_trait::async_trait]
impl PayerAdapter for SandboxPayer {
    async fn eligibility(
        &self,
        _payer: &str,
        plan_name: &str,
        member_id: &str,
        on: NaiveDate,
        (from, to): (NaiveDate, Option<NaiveDate>),
    ) -> AppResult<Eligibility> {
        let upper = member_id.to_ascii_uppercase();
        if upper.starts_with("UNKNOWN") {
            return Ok(Eligibility {
                status: "UNKNOWN",
                plan_name: None,
                copay_cents: None,
            });
        }
        let within = on >= from && to.is_none_or(|t| on <= t);
        if upper.starts_with("INACTIVE") || !within {
            return Ok(Eligibility {
                status: "INACTIVE",
                plan_name: Some(plan_name.to_owned()),
                copay_cents: None,
            });
        }
        let sum: i64 = member_id.bytes().map(i64::from).sum();
        Ok(Eligibility {
            status: "ACTIVE",
            plan_name: Some(plan_name.to_owned()),
            copay_cents: Some(1000 + (sum % 5) * 500),
        })
    }
}
