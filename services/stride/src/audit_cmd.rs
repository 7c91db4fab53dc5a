//! `stride audit verify | export | replay`: the decision log from the command line.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use futures_util::StreamExt;
use stride_store::{AuditQuery, ChainCheck};

use crate::audit::{to_event, to_json};
use crate::catalog::Catalog;
use crate::cli::AuditCommand;
use crate::config::Settings;
use crate::replay::replay;
use crate::startup::open_store;

pub async fn run(command: AuditCommand, settings: Settings) -> ExitCode {
    match execute(command, settings).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stride: {e}");
            ExitCode::from(2)
        }
    }
}

async fn execute(
    command: AuditCommand,
    settings: Settings,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let store = open_store(&settings).await?;
    let code = match command {
        AuditCommand::Verify => {
            let mut check = ChainCheck::default();
            let query = AuditQuery::default();
            let mut rows = store.audit_stream(&query, true);
            while let Some(row) = rows.next().await {
                check.push(&row?);
            }
            drop(rows);
            println!("{}", crate::routes::audit::report(&check));
            if check.broken.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        AuditCommand::Export {
            format,
            out,
            patient,
        } => {
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let bundle = format == "bundle";
            let query = AuditQuery {
                patient_ref: patient,
                ..AuditQuery::default()
            };
            let tty = std::io::stderr().is_terminal();
            let mut rows = store.audit_stream(&query, true);
            let mut n: u64 = 0;
            if bundle {
                write!(sink, r#"{{"resourceType":"Bundle","type":"collection""#)?;
            }
            while let Some(row) = rows.next().await {
                let a = row?;
                if bundle {
                    write!(
                        sink,
                        "{}{}",
                        if n == 0 { r#","entry":["# } else { "," },
                        serde_json::json!({"resource": to_event(&a)?})
                    )?;
                } else {
                    writeln!(sink, "{}", to_json(&a))?;
                }
                n += 1;
                if n % 10_000 == 0 {
                    if tty {
                        eprint!("\rexported {n} entries");
                    } else {
                        eprintln!("exported {n} entries");
                    }
                }
            }
            if bundle {
                write!(sink, "{}", if n == 0 { "}" } else { "]}" })?;
            }
            sink.flush()?;
            eprintln!("{}exported {n} entries", if tty { "\r" } else { "" });
            ExitCode::SUCCESS
        }
        AuditCommand::Replay {
            entry,
            with_version,
        } => {
            let catalog = Catalog::load(&settings.guidelines_dir)?;
            let id = uuid::Uuid::parse_str(&entry)
                .map_err(|_| "ENTRY must be an audit entry id (a UUID)")?;
            let a = store.audit_entry(id).await?;
            let r = replay(&catalog, &a, with_version.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            if r.identical {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}
