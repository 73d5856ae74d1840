//! What every subscription does for each event: decide afresh. The socket's viewer is
//! taken at subscribe time; each event is then checked against the session as it stands
//! (ended on any instance: the subscription ends UNAUTHENTICATED) and against a viewer
//! that remembers nothing from earlier events, so a consent withdrawn, a care-team
//! removal or a revoked share applies to the very next event.
use crate::error::{AppError, AppResult};
use crate::identity::Viewer;
use crate::state::AppState;

#[derive(Clone)]
pub struct LiveViewer {
    pub state: AppState,
    viewer: Viewer,
}

impl LiveViewer {
    pub fn new(state: &AppState, viewer: &Viewer) -> Self {
        LiveViewer {
            state: state.clone(),
            viewer: viewer.clone(),
        }
    }

    /// Who the subscriber is as of this event (see the module's notes). Looking does not
    /// count as activity: the session's inactivity deadline stays where it is.
    pub async fn now(&self) -> AppResult<Viewer> {
        match self
            .state
            .stores
            .sessions
            .peek(&self.viewer.session_id)
            .await?
        {
            Some((s, _)) if s.user_id == self.viewer.user_id && !s.restricted => {
                Ok(self.viewer.fresh())
            }
            _ => Err(AppError::Unauthenticated),
        }
    }

    /// The subscriber as at subscribe time (its ids do not change within a session).
    pub fn viewer(&self) -> &Viewer {
        &self.viewer
    }
}
