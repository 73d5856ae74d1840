//! Login, MFA, session lifecycle and refresh rotation with reuse detection.
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use secrecy::SecretString;
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;

use crate::access::{RequestMeta, Role, Viewer};
use crate::audit::{AuditEvent, Outcome, WriteTxn};
use crate::credentials::tokens::{random_token, token_hash};
use crate::crypto::Slot;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::stores::{RefreshRecord, Rotation, Session};
use entity::users;

// What failed sign-in steps say: no hint whether the account exists.
const WRONG_PASSWORD: &str = "sign-in failed: check the e-mail address and the password";
const WRONG_CODE: &str = "the code is not right; sign in again for a new attempt";
const CHALLENGE_GONE: &str = "this sign-in attempt has expired or was used already; sign in again";
const REFRESH_GONE: &str = "the refresh token is no longer valid; sign in again";

/// What a finished sign-in hands the client.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: i64,
}

pub enum LoginOutcome {
    Signed(Tokens),
    /// Password was right; a TOTP code must follow with this one-time token.
    MfaRequired {
        mfa_token: String,
    },
}

const MFA_CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// Normalised e-mail: trimmed and lower-cased (the form blind indexes are computed over).
pub fn normalize_email(s: &str) -> String {
    s.trim().to_lowercase()
}

pub fn user_email_index(state: &AppState, email: &str) -> Vec<u8> {
    state
        .keys
        .blind_index("users", "email", &normalize_email(email))
}

async fn find_user_by_email(state: &AppState, email: &str) -> AppResult<Option<users::Model>> {
    Ok(users::Entity::find()
        .filter(users::Column::EmailBidx.eq(user_email_index(state, email)))
        .one(&state.db)
        .await?)
}

pub async fn login(
    state: &AppState,
    meta: &RequestMeta,
    email: &str,
    password: &SecretString,
) -> AppResult<LoginOutcome> {
    let cfg = &state.cfg;
    let account_key = account_limit_key(&user_email_index(state, email));
    let ip_key = format!("login:ip:{}", meta.ip.as_deref().unwrap_or("unknown"));
    // Count the attempt before checking it, so attempts batched into one request (aliases)
    // or racing in parallel are each counted.
    let (acct_n, acct_ttl) = state
        .stores
        .limits
        .hit(&account_key, cfg.login_window)
        .await?;
    let (ip_n, ip_ttl) = state.stores.limits.hit(&ip_key, cfg.login_window).await?;
    if acct_n > cfg.login_max_per_account || ip_n > cfg.login_max_per_ip {
        let retry = if acct_n > cfg.login_max_per_account {
            acct_ttl
        } else {
            ip_ttl
        };
        state
            .audit
            .record(
                AuditEvent::new("auth.login", "user")
                    .meta(meta)
                    .outcome(Outcome::Denied)
                    .detail(serde_json::json!({ "reason": "rate_limited" })),
            )
            .await?;
        return Err(AppError::RateLimited {
            retry_after_secs: retry,
        });
    }

    let user = find_user_by_email(state, email).await?;
    let ok = state
        .passwords
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        (_, user) => {
            let mut ev = AuditEvent::new("auth.login", "user")
                .meta(meta)
                .outcome(Outcome::Failure)
                .detail(serde_json::json!({ "reason": "invalid_credentials" }));
            if let Some(u) = &user {
                ev = ev.resource(u.id.to_string());
            }
            state.audit.record(ev).await?;
            return Err(AppError::SignInFailed(WRONG_PASSWORD));
        }
    };
    state.stores.limits.undo(&ip_key).await?;
    let role = parse_role(&user.role)?;
    // With MFA enrolled, the account's failure count is cleared only once the code is right
    // too, so password + code guessing stays throttled.
    if !user.mfa_enrolled {
        state.stores.limits.reset(&account_key).await?;
    }

    if user.mfa_enrolled {
        let mfa_token = random_token();
        state
            .stores
            .kv
            .set(
                &format!("mfa:{}", token_hash(&mfa_token)),
                user.id.as_bytes(),
                MFA_CHALLENGE_TTL,
            )
            .await?;
        state
            .audit
            .record(
                AuditEvent::new("auth.login", "user")
                    .meta(meta)
                    .actor(user.id, role.as_str())
                    .resource(user.id.to_string())
                    .detail(serde_json::json!({ "stage": "password", "mfa": "required" })),
            )
            .await?;
        return Ok(LoginOutcome::MfaRequired { mfa_token });
    }
    let tokens = start_session(state, &user, role).await?;
    state
        .audit
        .record(
            AuditEvent::new("auth.login", "user")
                .meta(meta)
                .actor(user.id, role.as_str())
                .resource(user.id.to_string()),
        )
        .await?;
    Ok(LoginOutcome::Signed(tokens))
}

fn parse_role(s: &str) -> AppResult<Role> {
    Role::parse(s).ok_or_else(|| AppError::internal_msg("user row has an unknown role"))
}

async fn start_session(state: &AppState, user: &users::Model, role: Role) -> AppResult<Tokens> {
    let sid = Uuid::new_v4().simple().to_string();
    let restricted = state.cfg.mfa_required_roles.contains(&role) && !user.mfa_enrolled;
    let session = Session {
        user_id: user.id,
        role,
        patient_id: user.patient_id,
        provider_id: user.provider_id,
        mfa_enrolled: user.mfa_enrolled,
        restricted,
        refresh_gen: 0,
        created_at: Utc::now().timestamp(),
    };
    state
        .stores
        .sessions
        .create(&sid, &session, state.cfg.session_idle)
        .await?;
    issue_tokens(state, &sid, &session).await
}

async fn issue_tokens(state: &AppState, sid: &str, session: &Session) -> AppResult<Tokens> {
    let refresh_token = random_token();
    let rec = RefreshRecord {
        sid: sid.to_owned(),
        generation: session.refresh_gen,
    };
    state
        .stores
        .sessions
        .put_refresh(
            &token_hash(&refresh_token),
            &rec,
            state.cfg.refresh_token_ttl,
        )
        .await?;
    let (access_token, expires_at) = state.tokens.issue(session.user_id, session.role, sid)?;
    Ok(Tokens {
        access_token,
        refresh_token,
        expires_at,
    })
}

pub async fn verify_mfa(
    state: &AppState,
    meta: &RequestMeta,
    mfa_token: &str,
    code: &str,
) -> AppResult<Tokens> {
    let key = format!("mfa:{}", token_hash(mfa_token));
    // One-time: the challenge is consumed whether or not the code is right.
    let raw = state
        .stores
        .kv
        .take(&key)
        .await?
        .ok_or(AppError::SignInFailed(CHALLENGE_GONE))?;
    let user_id = Uuid::from_slice(&raw).map_err(|_| AppError::SignInFailed(CHALLENGE_GONE))?;
    let user = users::Entity::find_by_id(user_id)
        .one(&state.db)
        .await?
        .ok_or(AppError::SignInFailed(CHALLENGE_GONE))?;
    let role = parse_role(&user.role)?;
    let ev = AuditEvent::new("auth.mfa_verify", "user")
        .meta(meta)
        .actor(user.id, role.as_str())
        .resource(user.id.to_string());
    let limit_key = format!("mfa:user:{}", user.id);
    let (n, ttl) = state
        .stores
        .limits
        .hit(&limit_key, state.cfg.login_window)
        .await?;
    if n > state.cfg.login_max_per_account {
        state.audit.record(ev.outcome(Outcome::Denied)).await?;
        return Err(AppError::RateLimited {
            retry_after_secs: ttl,
        });
    }
    let ok = match &user.mfa_secret_enc {
        Some(enc) => check_totp(state, &user, "mfa_secret", enc, code).await?,
        None => false,
    };
    if !ok {
        state.audit.record(ev.outcome(Outcome::Failure)).await?;
        return Err(AppError::SignInFailed(WRONG_CODE));
    }
    state.stores.limits.reset(&limit_key).await?;
    state
        .stores
        .limits
        .reset(&account_limit_key(&user.email_bidx))
        .await?;
    let tokens = start_session(state, &user, role).await?;
    state.audit.record(ev).await?;
    Ok(tokens)
}

fn account_limit_key(email_bidx: &[u8]) -> String {
    format!("login:acct:{}", hex::encode(email_bidx))
}

const TOTP_STEP: u64 = 30;

fn totp_for(secret: &[u8], account: &str) -> AppResult<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        TOTP_STEP,
        secret.to_vec(),
        Some("Caregraph".to_owned()),
        account.to_owned(),
    )
    .map_err(|_| AppError::internal_msg("invalid TOTP secret"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Check a TOTP code (one step of clock skew either way) and refuse a code whose time step
/// was already used, so an observed code cannot be replayed.
async fn check_totp(
    state: &AppState,
    user: &users::Model,
    column: &'static str,
    enc: &[u8],
    code: &str,
) -> AppResult<bool> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(false);
    }
    let secret = state
        .keys
        .open(
            Slot {
                table: "users",
                column,
                row: &user.id,
            },
            enc,
        )
        .map_err(AppError::internal)?;
    let totp = totp_for(&secret, "user")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(AppError::internal)?
        .as_secs();
    let step = now / TOTP_STEP;
    let Some(matched) = [step - 1, step, step + 1]
        .into_iter()
        .find(|s| constant_time_eq(totp.generate(s * TOTP_STEP).as_bytes(), code.as_bytes()))
    else {
        return Ok(false);
    };
    let used_key = format!("mfa:step:{}", user.id);
    let last_used = state
        .stores
        .kv
        .get(&used_key)
        .await?
        .and_then(|b| b.try_into().ok().map(u64::from_be_bytes));
    if last_used.is_some_and(|last| matched <= last) {
        return Ok(false);
    }
    state
        .stores
        .kv
        .set(
            &used_key,
            &matched.to_be_bytes(),
            Duration::from_secs(4 * TOTP_STEP),
        )
        .await?;
    Ok(true)
}

/// Start MFA enrolment: a new secret, kept encrypted as pending until confirmed.
pub async fn enroll_mfa(state: &AppState, viewer: &Viewer) -> AppResult<(String, String)> {
    let mut tx = WriteTxn::begin(&state.db).await?;
    let user = users::Entity::find_by_id(viewer.user_id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::Unauthenticated)?;
    if user.mfa_enrolled {
        return Err(AppError::Conflict(
            "MFA is already enrolled for this account",
        ));
    }
    let secret = Secret::generate_secret()
        .to_bytes()
        .map_err(AppError::internal)?;
    let email = state.keys.open_str(
        Slot {
            table: "users",
            column: "email",
            row: &user.id,
        },
        &user.email_enc,
    )?;
    let totp = totp_for(&secret, &email)?;
    let enc = state.keys.seal(
        Slot {
            table: "users",
            column: "mfa_pending",
            row: &user.id,
        },
        &secret,
    )?;
    let mut am: users::ActiveModel = user.into();
    am.mfa_pending_enc = Set(Some(enc));
    users::Entity::update(am).exec(tx.conn()).await?;
    tx.audit(
        AuditEvent::by(viewer, "auth.mfa_enroll", "user").resource(viewer.user_id.to_string()),
    );
    tx.commit().await?;
    Ok((totp.get_secret_base32(), totp.get_url()))
}

/// Finish enrolment with a code from the authenticator; lifts the session's restriction.
pub async fn confirm_mfa(state: &AppState, viewer: &Viewer, code: &str) -> AppResult<()> {
    let user = users::Entity::find_by_id(viewer.user_id)
        .one(&state.db)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    let Some(pending) = user.mfa_pending_enc.clone() else {
        return Err(AppError::Conflict("start enrolment with enrollMfa first"));
    };
    let ev =
        AuditEvent::by(viewer, "auth.mfa_confirm", "user").resource(viewer.user_id.to_string());
    if !check_totp(state, &user, "mfa_pending", &pending, code).await? {
        state.audit.record(ev.outcome(Outcome::Failure)).await?;
        return Err(AppError::validation(
            "code",
            "the code does not match; check the device clock and try the next code",
        ));
    }
    let secret = state
        .keys
        .open(
            Slot {
                table: "users",
                column: "mfa_pending",
                row: &user.id,
            },
            &pending,
        )
        .map_err(AppError::internal)?;
    let enc = state.keys.seal(
        Slot {
            table: "users",
            column: "mfa_secret",
            row: &user.id,
        },
        &secret,
    )?;
    let mut tx = WriteTxn::begin(&state.db).await?;
    let mut am: users::ActiveModel = user.into();
    am.mfa_secret_enc = Set(Some(enc));
    am.mfa_pending_enc = Set(None);
    am.mfa_enrolled = Set(true);
    users::Entity::update(am).exec(tx.conn()).await?;
    tx.audit(ev);
    tx.commit().await?;
    state
        .stores
        .sessions
        .mark_mfa_enrolled(&viewer.session_id, state.cfg.session_idle)
        .await?;
    Ok(())
}

pub async fn refresh(
    state: &AppState,
    meta: &RequestMeta,
    refresh_token: &str,
) -> AppResult<Tokens> {
    let hash = token_hash(refresh_token);
    let rec = state
        .stores
        .sessions
        .get_refresh(&hash)
        .await?
        .ok_or(AppError::SignInFailed(REFRESH_GONE))?;
    match state
        .stores
        .sessions
        .rotate(&rec.sid, rec.generation, state.cfg.session_idle)
        .await?
    {
        Rotation::Rotated(session) => {
            let tokens = issue_tokens(state, &rec.sid, &session).await?;
            state
                .audit
                .record(
                    AuditEvent::new("auth.refresh", "session")
                        .meta(meta)
                        .actor(session.user_id, session.role.as_str())
                        .resource(rec.sid.clone()),
                )
                .await?;
            Ok(tokens)
        }
        Rotation::Reused => {
            state
                .audit
                .record(
                    AuditEvent::new("auth.refresh", "session")
                        .meta(meta)
                        .resource(rec.sid.clone())
                        .outcome(Outcome::Denied)
                        .detail(
                            serde_json::json!({ "reason": "refresh_token_reuse", "revoked": true }),
                        ),
                )
                .await?;
            Err(AppError::SignInFailed(REFRESH_GONE))
        }
        Rotation::Gone => Err(AppError::SignInFailed(REFRESH_GONE)),
    }
}

/// End the session a refresh token stands for (a browser signing out with its cookie,
/// holding no access token it can trust to be live). Only the current token of the
/// family counts; an unknown, rotated-out or expired one ends nothing and is no error.
pub async fn logout_by_refresh(
    state: &AppState,
    meta: &RequestMeta,
    refresh_token: &str,
) -> AppResult<()> {
    let sessions = &state.stores.sessions;
    let Some(rec) = sessions.get_refresh(&token_hash(refresh_token)).await? else {
        return Ok(());
    };
    // A rotated-out token of the session ends it too: a sign-out racing a refresh (the
    // page's own, or another tab's) may still carry the cookie that refresh replaced, and
    // that sign-out must not leave the session alive. Presenting such a token to refresh
    // would revoke the session anyway.
    let Some((session, _)) = sessions.peek(&rec.sid).await? else {
        return Ok(());
    };
    sessions.delete(&rec.sid).await?;
    state
        .audit
        .record(
            AuditEvent::new("auth.logout", "session")
                .meta(meta)
                .actor(session.user_id, session.role.as_str())
                .resource(rec.sid),
        )
        .await
}

pub async fn logout(state: &AppState, viewer: &Viewer) -> AppResult<()> {
    state.stores.sessions.delete(&viewer.session_id).await?;
    state
        .audit
        .record(
            AuditEvent::by(viewer, "auth.logout", "session").resource(viewer.session_id.clone()),
        )
        .await
}

/// Bearer token → Viewer: signature and claims, then the live session (sliding its
/// inactivity deadline in the same round trip). `None` means not signed in.
pub async fn resolve_viewer(
    state: &AppState,
    bearer: &str,
    meta: RequestMeta,
) -> AppResult<Option<Viewer>> {
    let Some(claims) = state.tokens.verify(bearer) else {
        return Ok(None);
    };
    let Some(s) = state
        .stores
        .sessions
        .touch(&claims.sid, state.cfg.session_idle)
        .await?
    else {
        return Ok(None);
    };
    if s.user_id != claims.sub || s.role != claims.role {
        return Ok(None);
    }
    Ok(Some(Viewer::new(
        s.user_id,
        s.role,
        s.patient_id,
        s.provider_id,
        claims.sid.clone(),
        s.mfa_enrolled,
        s.restricted,
        meta,
    )))
}

/// Create a user account (seeding and administration).
pub async fn create_user(
    state: &AppState,
    db: &impl sea_orm::ConnectionTrait,
    email: &str,
    password_hash: String,
    role: Role,
    patient_id: Option<Uuid>,
    provider_id: Option<Uuid>,
) -> AppResult<Uuid> {
    let id = Uuid::new_v4();
    user_row(
        state,
        id,
        email,
        password_hash,
        role,
        patient_id,
        provider_id,
    )?
    .insert(db)
    .await?;
    Ok(id)
}

/// A new account's row (e-mail sealed and blind-indexed), for [`create_user`] and bulk
/// loads.
pub fn user_row(
    state: &AppState,
    id: Uuid,
    email: &str,
    password_hash: String,
    role: Role,
    patient_id: Option<Uuid>,
    provider_id: Option<Uuid>,
) -> AppResult<users::ActiveModel> {
    let email = normalize_email(email);
    Ok(users::ActiveModel {
        id: Set(id),
        email_bidx: Set(user_email_index(state, &email)),
        email_enc: Set(state.keys.seal_str(
            Slot {
                table: "users",
                column: "email",
                row: &id,
            },
            &email,
        )?),
        password_hash: Set(password_hash),
        role: Set(role.as_str().to_owned()),
        patient_id: Set(patient_id),
        provider_id: Set(provider_id),
        mfa_enrolled: Set(false),
        mfa_secret_enc: Set(None),
        mfa_pending_enc: Set(None),
        created_at: Set(Utc::now()),
    })
}

/// The signed-in user's own e-mail address.
pub async fn user_email(state: &AppState, user_id: Uuid) -> AppResult<String> {
    let user = users::Entity::find_by_id(user_id)
        .one(&state.db)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    state.keys.open_str(
        Slot {
            table: "users",
            column: "email",
            row: &user.id,
        },
        &user.email_enc,
    )
}
