use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use caregraph::cli::{AuditCommand, BillingCommand, Cli, Command, KeysCommand};
use caregraph::config::Config;
use caregraph::crypto::{KeyFile, KeySource, write_private};
use caregraph::{audit, schema, seed, startup, telemetry};

/// mimalloc: the request path allocates many small, short-lived objects, and glibc's
/// malloc spent close to a fifth of the server's CPU on them (perf, bench/README.md).
/// Built without the `mimalloc` feature, the system's, for heap profilers.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    // Commands that need no configuration.
    match &cli.command {
        Some(Command::Schema) => {
            print!("{}", schema::sdl());
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Keys {
            command: KeysCommand::Generate { out },
        }) => {
            let json = serde_json::to_string_pretty(&KeyFile::generate(false))
                .map_err(|e| e.to_string())?;
            match out {
                Some(path) => {
                    write_private(path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
                    eprintln!(
                        "wrote {} (mode 0600); point CAREGRAPH_KEYS_FILE at it",
                        path.display()
                    );
                }
                None => println!("{json}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let cfg = Config::from_env().map_err(|e| e.to_string())?;
    telemetry::init(cfg.log_json);
    if let KeySource::GeneratedDev(path) = &cfg.key_source {
        tracing::warn!(path = %path, "using DEVELOPMENT keys generated on this machine; never use them for real data");
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cfg).await,
        Command::Migrate => {
            let db = startup::connect_db(&cfg).await.map_err(|e| e.to_string())?;
            startup::migrate(&db).await.map_err(|e| e.to_string())?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::SeedDemo {
            patients,
            ids_out,
            portal_accounts,
            accounts_out,
        } => {
            let state = startup::build_state(cfg).await.map_err(|e| e.to_string())?;
            let created = seed::demo(&state).await.map_err(|e| e.to_string())?;
            eprintln!(
                "{}",
                if created {
                    "demo accounts seeded"
                } else {
                    "demo accounts already present"
                }
            );
            if patients > 0 {
                let bar = indicatif::ProgressBar::new(patients);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} patients {per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                let create = |path: &Option<std::path::PathBuf>| {
                    path.as_ref()
                        .map(|p| {
                            std::fs::File::create(p)
                                .map(std::io::BufWriter::new)
                                .map_err(|e| format!("cannot write {}: {e}", p.display()))
                        })
                        .transpose()
                };
                let mut out = create(&ids_out)?;
                let mut accounts = create(&accounts_out)?;
                let mut write_error = None;
                seed::bulk_patients(&state, patients, portal_accounts, |n, ids, portal| {
                    bar.set_position(n);
                    if let Some(out) = out.as_mut() {
                        for id in ids {
                            if let Err(e) = writeln!(out, "{id}") {
                                write_error.get_or_insert(e);
                            }
                        }
                    }
                    if let Some(out) = accounts.as_mut() {
                        for a in portal {
                            let line = format!(
                                "{}\t{}\t{}\t{}",
                                a.email, a.patient, a.thread, a.statement
                            );
                            if let Err(e) = writeln!(out, "{line}") {
                                write_error.get_or_insert(e);
                            }
                        }
                    }
                })
                .await
                .map_err(|e| e.to_string())?;
                bar.finish();
                for mut out in [out, accounts].into_iter().flatten() {
                    if let Some(e) = write_error.take().or_else(|| out.flush().err()) {
                        return Err(format!("cannot write the seeded ids: {e}"));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let db = startup::connect_db(&cfg).await.map_err(|e| e.to_string())?;
            let report = audit::verify_chain(&db, |n| eprint!("\rchecked {n} rows"))
                .await
                .map_err(|e| e.to_string())?;
            eprintln!();
            match report {
                audit::VerifyReport::Intact { rows } => {
                    println!("audit chain intact: {rows} rows");
                    Ok(ExitCode::SUCCESS)
                }
                audit::VerifyReport::Broken { seq, reason } => {
                    println!("audit chain BROKEN at row {seq}: {reason}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Stats,
        } => {
            let db = startup::connect_db(&cfg).await.map_err(|e| e.to_string())?;
            for (action, outcome, rows) in audit::stats(&db).await.map_err(|e| e.to_string())? {
                println!(
                    "{}",
                    serde_json::json!({ "action": action, "outcome": outcome, "rows": rows })
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Billing {
            command: BillingCommand::Reconcile,
        } => {
            let state = startup::build_state(cfg).await.map_err(|e| e.to_string())?;
            let gw = state
                .service::<caregraph::billing::graphql::Gateways>()
                .map_err(|e| e.to_string())?;
            let r = caregraph::billing::service::reconcile(
                &state.db,
                gw.payments.as_ref(),
                chrono::TimeDelta::zero(),
                chrono::TimeDelta::minutes(10),
            )
            .await
            .map_err(|e| e.to_string())?;
            println!(
                "reconciled: {} succeeded, {} declined, {} still pending",
                r.succeeded, r.declined, r.still_pending
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema | Command::Keys { .. } => unreachable!("handled above"),
    }
}

async fn serve(cfg: Config) -> Result<ExitCode, String> {
    let addr = cfg.bind_addr;
    let graphiql = cfg.graphiql;
    let portal = cfg.portal_dir.join("index.html").is_file();
    let state = startup::build_state(cfg).await.map_err(|e| e.to_string())?;
    if state.cfg.seed_demo && seed::demo(&state).await.map_err(|e| e.to_string())? {
        tracing::info!(
            "seeded demo accounts (password {:?}); see README",
            seed::DEMO_PASSWORD
        );
    }
    caregraph::billing::start_reconciler(&state);
    let listener = startup::bind(addr).await.map_err(|e| e.to_string())?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if graphiql {
        println!("Caregraph is running: GraphiQL at http://{local}/graphql");
    } else {
        println!("Caregraph is running on http://{local}/graphql");
    }
    if portal {
        println!("The patient portal is at http://{local}/portal/");
    }
    startup::serve(state, listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
