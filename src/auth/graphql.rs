//! Sign-in and session operations, and `me`.
use async_graphql::{ComplexObject, Context, Enum, ID, Object, Result, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;

use super::cookie;
use super::service::{self, LoginOutcome, Tokens};
use crate::access::Role;
use crate::appointments::graphql::{self as appointments, Provider};
use crate::error::AppError;
use crate::graphql::context::{ContextExt, OverHttp};

/// Where a sign-in hands over the refresh token.
#[derive(Enum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenDelivery {
    /// In the payload's `refreshToken`, for `refreshSession` (mobile and server clients).
    #[default]
    Body,
    /// In an HttpOnly, Secure, SameSite=Strict cookie scoped to `/auth`, for browsers:
    /// `POST /auth/refresh` rotates it and `POST /auth/logout` ends the session. Script
    /// never sees the token; `refreshToken` is null. HTTP only (not over the websocket).
    Cookie,
}

impl TokenDelivery {
    /// Refuse cookie delivery where no cookie can be set, before anything is spent.
    fn check(self, ctx: &Context<'_>) -> Result<Self, AppError> {
        if self == TokenDelivery::Cookie && ctx.data_opt::<OverHttp>().is_none() {
            return Err(AppError::validation(
                "refreshTokenIn",
                "a cookie can only be set over HTTP: sign in with POST /graphql",
            ));
        }
        Ok(self)
    }

    /// The payload for issued tokens, the refresh token where this delivery puts it.
    fn deliver(self, ctx: &Context<'_>, tokens: Tokens) -> Result<LoginPayload> {
        let cfg = &ctx.state()?.cfg;
        let mut payload = LoginPayload::from(tokens);
        payload.idle_timeout_seconds = i32::try_from(cfg.session_idle.as_secs()).ok();
        if self == TokenDelivery::Cookie
            && let Some(token) = payload.refresh_token.take()
        {
            ctx.append_http_header(
                axum::http::header::SET_COOKIE,
                cookie::set(&token, cfg.refresh_token_ttl),
            );
        }
        Ok(payload)
    }
}

/// The result of a sign-in step. With MFA enrolled, `login` returns only `mfaRequired` and
/// `mfaToken`; `verifyMfa` then returns the tokens.
#[derive(SimpleObject, Default)]
pub struct LoginPayload {
    /// Bearer token for `Authorization: Bearer …` (15 minutes).
    pub access_token: Option<String>,
    /// One-time token for `refreshSession`; rotated on every use.
    pub refresh_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub mfa_required: bool,
    pub mfa_token: Option<String>,
    /// Seconds without activity after which the session ends (`SESSION_IDLE_TIMEOUT_SECS`);
    /// set with the tokens, so a client can warn before it happens.
    pub idle_timeout_seconds: Option<i32>,
}

impl From<Tokens> for LoginPayload {
    fn from(t: Tokens) -> Self {
        LoginPayload {
            access_token: Some(t.access_token),
            refresh_token: Some(t.refresh_token),
            expires_at: Utc.timestamp_opt(t.expires_at, 0).single(),
            mfa_required: false,
            mfa_token: None,
            idle_timeout_seconds: None,
        }
    }
}

/// A new TOTP secret to add to an authenticator app; confirm it with `confirmMfa`.
#[derive(SimpleObject)]
pub struct MfaEnrollment {
    /// Base32 secret, for manual entry.
    pub secret: String,
    /// `otpauth://` URI, for a QR code.
    pub otpauth_url: String,
}

/// The signed-in user.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Me {
    pub id: ID,
    pub email: String,
    pub role: Role,
    pub patient_id: Option<ID>,
    pub provider_id: Option<ID>,
    pub mfa_enrolled: bool,
    #[graphql(skip)]
    pub provider_key: Option<uuid::Uuid>,
}

#[ComplexObject]
impl Me {
    /// Your entry in the provider directory, if you are a provider.
    async fn provider(&self, ctx: &Context<'_>) -> Result<Option<Provider>> {
        match self.provider_key {
            Some(id) => Ok(appointments::provider_by_id(ctx, id).await?),
            None => Ok(None),
        }
    }

    /// Messages you have not read, across your inbox.
    async fn unread_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(crate::messages::graphql::unread_count(ctx).await?)
    }
}

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// Who you are signed in as.
    async fn me(&self, ctx: &Context<'_>) -> Result<Me> {
        let state = ctx.state()?;
        let v = ctx.viewer_allow_restricted()?;
        let email = service::user_email(state, v.user_id).await?;
        Ok(Me {
            id: ID(v.user_id.to_string()),
            email,
            role: v.role,
            patient_id: v.patient_id.map(|p| ID(p.to_string())),
            provider_id: v.provider_id.map(|p| ID(p.to_string())),
            mfa_enrolled: v.mfa_enrolled,
            provider_key: v.provider_id,
        })
    }
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Sign in. A wrong password and an unknown e-mail give the same answer in the same
    /// time; repeated failures are throttled per account and per IP (RATE_LIMITED).
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        #[graphql(default)] refresh_token_in: TokenDelivery,
    ) -> Result<LoginPayload> {
        let state = ctx.state()?;
        let delivery = refresh_token_in.check(ctx)?;
        let password = SecretString::from(password);
        match service::login(state, &ctx.meta(), &email, &password).await? {
            LoginOutcome::Signed(t) => delivery.deliver(ctx, t),
            LoginOutcome::MfaRequired { mfa_token } => Ok(LoginPayload {
                mfa_required: true,
                mfa_token: Some(mfa_token),
                ..Default::default()
            }),
        }
    }

    /// Second sign-in step: the `mfaToken` from `login` and a current TOTP code.
    async fn verify_mfa(
        &self,
        ctx: &Context<'_>,
        mfa_token: String,
        code: String,
        #[graphql(default)] refresh_token_in: TokenDelivery,
    ) -> Result<LoginPayload> {
        let state = ctx.state()?;
        let delivery = refresh_token_in.check(ctx)?;
        let tokens = service::verify_mfa(state, &ctx.meta(), &mfa_token, &code).await?;
        delivery.deliver(ctx, tokens)
    }

    /// Exchange a refresh token for new tokens. The old refresh token stops working;
    /// presenting it again revokes the whole session.
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> Result<LoginPayload> {
        let state = ctx.state()?;
        let tokens = service::refresh(state, &ctx.meta(), &refresh_token).await?;
        TokenDelivery::Body.deliver(ctx, tokens)
    }

    /// End this session now; its tokens stop working at once.
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool> {
        let state = ctx.state()?;
        let v = ctx.viewer_allow_restricted()?;
        service::logout(state, v).await?;
        Ok(true)
    }

    /// Start TOTP enrolment for the signed-in user.
    async fn enroll_mfa(&self, ctx: &Context<'_>) -> Result<MfaEnrollment> {
        let state = ctx.state()?;
        let v = ctx.viewer_allow_restricted()?;
        let (secret, otpauth_url) = service::enroll_mfa(state, v).await?;
        Ok(MfaEnrollment {
            secret,
            otpauth_url,
        })
    }

    /// Finish enrolment with a code from the authenticator app.
    async fn confirm_mfa(&self, ctx: &Context<'_>, code: String) -> Result<bool> {
        let state = ctx.state()?;
        let v = ctx.viewer_allow_restricted()?;
        service::confirm_mfa(state, v, &code).await?;
        Ok(true)
    }
}
