//! `stride audit verify | export | replay`: the decision log from the command line.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use futures_util::StreamExt;
use stride_store::AuditQuery;

use crate::audit::{to_event, to_json};
use crate::catalog::Catalog;
use crate::cli::AuditCommand;
use crate::config::Settings;
use crate::replay::replay;
use crate::startup::connect_checked;

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
    // Never migrates: the auditor runs this with the service role's credentials (a pod's),
    // which may read the log but not change the schema.
    let store = connect_checked(&settings).await?;
    let code = match command {
        AuditCommand::Verify => {
            let check =
                crate::routes::audit::check_chain(store.as_ref(), &AuditQuery::default()).await?;
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
                if n.is_multiple_of(10_000) {
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
        AuditCommand::Retention { keep_months } => {
            let today = time::OffsetDateTime::now_utc().date();
            // The first day of the month `keep_months` before this one.
            let months =
                today.year() * 12 + i32::from(today.month() as u8) - 1 - keep_months as i32;
            let month = time::Month::try_from((months.rem_euclid(12) + 1) as u8)?;
            let cutoff = time::Date::from_calendar_date(months.div_euclid(12), month, 1)?;
            let dropped = store.drop_audit_before(cutoff).await?;
            println!(
                "{}",
                serde_json::json!({"before": cutoff.to_string(), "droppedPartitions": dropped})
            );
            ExitCode::SUCCESS
        }
        AuditCommand::Replay {
            entry,
            with_version,
        } => {
            let catalog = Catalog::load(settings.guidelines()?)?;
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
