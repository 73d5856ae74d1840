//! The `caregraph` command line.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Caregraph: a HIPAA-grade GraphQL backend for a patient portal.
///
/// With no environment set it runs embedded: SQLite under data/, in-process session
/// stores, development keys generated once into data/dev-keys.json, demo data seeded on
/// first start. Set DATABASE_URL (postgres://…) and REDIS_URL (redis://…) for production
/// storage, and APP_ENV=production to refuse every unsafe default.
#[derive(Parser, Debug)]
#[command(name = "caregraph", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default): migrations, demo data in development, then listen on
    /// BIND_ADDR (127.0.0.1:8080).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Seed the demo accounts and data (development only).
    SeedDemo {
        /// Also add this many synthetic patients on the demo doctor's care team.
        #[arg(long, default_value_t = 0)]
        patients: u64,
        /// Write the new synthetic patients' ids to this file, one per line (benchmarks).
        #[arg(long, value_name = "FILE", requires = "patients")]
        ids_out: Option<std::path::PathBuf>,
        /// Give each synthetic patient a portal account (bulk-<id>@caregraph.dev, the demo
        /// password), a thread with the demo doctor and an open statement (benchmarks).
        #[arg(long, requires = "patients")]
        portal_accounts: bool,
        /// Write the portal accounts to this file, one per line: e-mail, patient id, thread
        /// id and statement id, separated by tabs.
        #[arg(long, value_name = "FILE", requires = "portal_accounts")]
        accounts_out: Option<std::path::PathBuf>,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Billing tools.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Key material tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the hash chain; exit 0 when intact, 1 naming the first broken row.
    Verify,
    /// Count audit rows by action and outcome, as JSON lines (monitoring, benchmarks).
    Stats,
}

#[derive(Subcommand, Debug)]
pub enum BillingCommand {
    /// Settle PENDING payments (whose gateway answer was lost) from what the gateway says,
    /// without charging again; one the gateway never saw for 10 minutes is DECLINED.
    Reconcile,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate a fresh production key set (JSON) for CAREGRAPH_KEYS / CAREGRAPH_KEYS_FILE.
    Generate {
        /// Write to this file (mode 0600, must not exist) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}
