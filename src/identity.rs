//! Who is asking: the signed-in user's role and identifiers, and where the request came
//! from. Plain values that every layer may name; what a viewer may do is decided in
//! `access`.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::Enum;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a signed-in user is.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Patient,
    Provider,
    Admin,
    Researcher,
}

crate::text_enum!(Role { Patient => "PATIENT", Provider => "PROVIDER", Admin => "ADMIN", Researcher => "RESEARCHER" });

/// Most bytes of a client's user agent that requests and audit rows keep.
pub const USER_AGENT_MAX: usize = 256;

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where a request came from; copied into every audit row.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub ip: Option<Arc<str>>,
    pub user_agent: Option<Arc<str>>,
    pub request_id: Option<Arc<str>>,
}

/// The viewer's standing towards one patient, as `access` established it during this
/// request: plain values, so the per-request cache can live on the [`Viewer`] without this
/// module knowing the policy's types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// The viewer may see the patient at all.
    pub visible: bool,
    pub care_team: bool,
    pub emergency: bool,
    /// Active consent scopes as a bitset of their indexes (`access` maps them); `None`
    /// until they were loaded.
    pub consents: Option<u32>,
}

/// Who is asking. Built once per request from the access token and the session store; the
/// only thing resolvers consult about identity.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub user_id: Uuid,
    pub role: Role,
    pub patient_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
    pub session_id: String,
    pub mfa_enrolled: bool,
    /// MFA is required for this role and not yet enrolled: only enrolment is allowed.
    pub restricted: bool,
    pub meta: RequestMeta,
    /// `access`'s per-request cache of the viewer's standing towards patients.
    pub(crate) standing: Arc<Mutex<HashMap<Uuid, Standing>>>,
    /// Held while `access` loads a standing into the cache, so concurrent fields load it
    /// once.
    pub(crate) standing_load: Arc<tokio::sync::Mutex<()>>,
}

impl Viewer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        user_id: Uuid,
        role: Role,
        patient_id: Option<Uuid>,
        provider_id: Option<Uuid>,
        session_id: String,
        mfa_enrolled: bool,
        restricted: bool,
        meta: RequestMeta,
    ) -> Self {
        Viewer {
            user_id,
            role,
            patient_id,
            provider_id,
            session_id,
            mfa_enrolled,
            restricted,
            meta,
            standing: Arc::default(),
            standing_load: Arc::default(),
        }
    }

    /// The same viewer with nothing remembered: a live subscription decides each event
    /// afresh against current state, never on what an earlier event established.
    pub fn fresh(&self) -> Viewer {
        Viewer {
            standing: Arc::default(),
            standing_load: Arc::default(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod clip_tests {
    use super::clip;

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc");
        // "é" is two bytes: a cut through it falls back to before it.
        assert_eq!(clip("aé", 2), "a");
        assert_eq!(clip("aé", 3), "aé");
    }
}
