//! The one error type. Its `Display` is written for the client: no PHI, no SQL, no input
//! echoed back. Internal causes are logged where they are converted, with the request id.
use async_graphql::ErrorExtensions;

pub type AppResult<T> = Result<T, AppError>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("authentication required: sign in and send the access token as a bearer token")]
    Unauthenticated,
    /// A sign-in step that failed (wrong password or code, expired challenge or refresh
    /// token): UNAUTHENTICATED, in words that fit the step.
    #[error("{0}")]
    SignInFailed(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the patient has not consented to share this information with you")]
    ConsentRequired { scope: &'static str },
    #[error("not found")]
    NotFound,
    #[error("invalid {field}: {reason}")]
    Validation {
        field: &'static str,
        reason: &'static str,
    },
    #[error("{0}")]
    Conflict(&'static str),
    #[error("too many attempts; retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    /// A live subscription fell behind and lost events: subscribe again with `after` the
    /// last cursor received (RESYNC).
    #[error(
        "this subscription fell behind and was ended: subscribe again, with `after` set to the last cursor you received"
    )]
    Resync,
    /// APQ: no document is registered under the hash; send it again with its text. The
    /// message is the one Apollo Client and urql look for.
    #[error("PersistedQueryNotFound")]
    PersistedQueryNotFound,
    /// Persisted documents are switched off here (`PERSISTED_QUERIES=off`): send the text.
    #[error("PersistedQueryNotSupported")]
    PersistedQueryNotSupported,
    /// Trusted documents: this one is not in the list.
    #[error(
        "only the documents in this server's persisted-document list run here: send the documentId of a listed one"
    )]
    PersistedQueryNotInList,
    #[error("internal error")]
    Internal(#[source] anyhow_like::Cause),
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated | AppError::SignInFailed(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::ConsentRequired { .. } => "CONSENT_REQUIRED",
            AppError::NotFound => "NOT_FOUND",
            AppError::Validation { .. } => "VALIDATION",
            AppError::Conflict(_) => "CONFLICT",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Resync => "RESYNC",
            AppError::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            AppError::PersistedQueryNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
            AppError::PersistedQueryNotInList => "PERSISTED_QUERY_NOT_IN_LIST",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    pub fn validation(field: &'static str, reason: &'static str) -> Self {
        AppError::Validation { field, reason }
    }

    /// Wrap an unexpected failure. The cause is logged (without PHI: callers pass database,
    /// store and crypto errors, which carry no values) and the client sees "internal error".
    pub fn internal<E>(e: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        AppError::Internal(anyhow_like::Cause(Box::new(e)))
    }

    /// [`AppError::internal`] for an error that arrives boxed (sqlx's argument encoding).
    pub fn internal_boxed(e: Box<dyn std::error::Error + Send + Sync + 'static>) -> Self {
        AppError::Internal(anyhow_like::Cause(e))
    }

    pub fn internal_msg(msg: &'static str) -> Self {
        AppError::Internal(anyhow_like::Cause(Box::new(anyhow_like::Msg(msg))))
    }
}

/// A boxed cause with its whole chain printable for logs.
pub mod anyhow_like {
    use std::fmt;

    pub struct Cause(pub Box<dyn std::error::Error + Send + Sync + 'static>);

    impl fmt::Debug for Cause {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0)?;
            let mut src = self.0.source();
            while let Some(s) = src {
                write!(f, "\n  caused by: {s}")?;
                src = s.source();
            }
            Ok(())
        }
    }
    impl fmt::Display for Cause {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(self, f)
        }
    }
    impl std::error::Error for Cause {}

    #[derive(Debug)]
    pub struct Msg(pub &'static str);
    impl fmt::Display for Msg {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Msg {}
}

impl From<sea_orm::DbErr> for AppError {
    fn from(e: sea_orm::DbErr) -> Self {
        if let Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) = e.sql_err() {
            return AppError::Conflict("a record with the same unique value already exists");
        }
        AppError::internal(e)
    }
}

impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(e: sea_orm::TransactionError<AppError>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(app) => app,
        }
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(e: AppError) -> Self {
        if let AppError::Internal(cause) = &e {
            tracing::error!(error.cause_chain = %cause, "internal error");
        }
        let code = e.code();
        async_graphql::Error::new(e.to_string()).extend_with(|_, ext| {
            ext.set("code", code);
            match &e {
                AppError::ConsentRequired { scope } => ext.set("scope", *scope),
                AppError::Validation { field, .. } => ext.set("fields", vec![*field]),
                AppError::RateLimited { retry_after_secs } => {
                    ext.set("retryAfter", *retry_after_secs)
                }
                _ => {}
            }
        })
    }
}
