//! GraphQL helpers the domains build on: the request context, guards, Relay paging, the
//! request pipeline (limits, operation cache, error clean-up, deny-by-default) and the
//! limits every operation runs under. No domain lives here; the schema that merges the
//! domains' roots is the top-level `schema` module.
pub mod context;
pub mod deny_by_default;
pub mod field_guards;
pub mod guards;
pub mod limits;
pub mod live;
pub mod operation_cache;
pub mod pipeline;
pub mod relay;
pub mod request_errors;

/// Limits applied to every operation.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    pub introspection: bool,
    /// Bounds checked before the text is parsed and before the document is expanded.
    pub shape: limits::ShapeLimits,
    /// Execution stops at the next field once a request (or one event of a subscription)
    /// has run this long.
    pub deadline: std::time::Duration,
    /// "Did you mean …" for signed-in callers; off in production.
    pub suggestions: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 12,
            complexity: 1000,
            introspection: true,
            shape: limits::ShapeLimits::default(),
            deadline: std::time::Duration::from_secs(10),
            suggestions: true,
        }
    }
}

impl Limits {
    /// The limits a server with this configuration applies.
    pub fn of(cfg: &crate::config::Config) -> Limits {
        Limits {
            depth: cfg.query_depth_limit,
            complexity: cfg.query_complexity_limit,
            introspection: cfg.introspection,
            suggestions: !cfg.is_production(),
            deadline: cfg.request_time_limit,
            ..Limits::default()
        }
    }
}
