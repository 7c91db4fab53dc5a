use std::process::ExitCode;

use clap::Parser;
use stride::cli::{Cli, Command, RulesCommand};
use stride::config::Settings;
use stride::startup::{open_store, Application};
use stride::{rules_cmd, telemetry};

// glibc's malloc spent about a quarter of the server's CPU under load (arena locking and
// consolidation across actix workers, sqlx and tokio threads); see docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stride: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut settings = settings;
    // Serving and checking rule sets read them; the rest (migrate, audit verify/export) never.
    let reads_rules = matches!(
        cli.command,
        Command::Serve | Command::Dev | Command::Rules { .. }
    );
    if let (true, Err(e)) = (reads_rules, settings.guidelines()) {
        eprintln!("stride: configuration error: {e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Rules { command } => rules(command, &settings),
        Command::Audit { command } => {
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            runtime.block_on(stride::audit_cmd::run(command, settings))
        }
        Command::Token {
            kind,
            service,
            scope,
            ttl,
        } => {
            match stride::dev::token(&settings, &kind, service.as_deref(), scope.as_deref(), ttl) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("stride: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve | Command::Migrate | Command::Dev => {
            if matches!(cli.command, Command::Dev) {
                match stride::dev::trust(&settings) {
                    Ok(t) => settings.dev_trust = Some(t),
                    Err(e) => {
                        eprintln!("stride: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            let telemetry = telemetry::init(settings.log_format);
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            let serve = matches!(cli.command, Command::Serve | Command::Dev);
            if settings.dev_trust.is_some() {
                tracing::warn!(
                    key_dir = %stride::dev::dir().display(),
                    "DEVELOPMENT MODE: Stride trusts a local key; `stride token` mints tokens. Never use this in production."
                );
                eprintln!("{}", stride::dev::how_to(&settings));
            }
            let code = runtime.block_on(async move {
                let result = if serve {
                    serve_app(settings).await
                } else {
                    migrate(settings).await
                };
                match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = %e, "stride failed");
                        eprintln!("stride: {e}");
                        ExitCode::FAILURE
                    }
                }
            });
            // Export the last spans before the process ends.
            drop(telemetry);
            code
        }
    }
}

async fn serve_app(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let app = Application::build(settings).await?;
    app.run_until_stopped().await?;
    Ok(())
}

async fn migrate(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let store = open_store(&settings).await?;
    store.close().await;
    println!("migrations applied ({})", settings.database.redacted());
    Ok(())
}

fn rules(command: RulesCommand, settings: &Settings) -> ExitCode {
    let dir = &settings.guidelines_dir;
    let result = match &command {
        RulesCommand::Validate { paths } => rules_cmd::validate(paths, dir),
        RulesCommand::Test { paths, verbose } => rules_cmd::test(paths, dir, *verbose),
        RulesCommand::Approve { .. } | RulesCommand::Activate { .. } => {
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            return match runtime.block_on(rules_cmd::govern(settings, &command)) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("stride: {e}");
                    ExitCode::from(2)
                }
            };
        }
        RulesCommand::Impact {
            candidate,
            since,
            tenant,
            format,
        } => {
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            let done = runtime.block_on(rules_cmd::impact(
                settings,
                candidate,
                since.as_deref(),
                tenant.clone(),
                *format,
            ));
            return match done {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("stride: {e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("stride: {n} problem(s)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("stride: {e}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("stride: cannot start the runtime: {e}");
            None
        }
    }
}
