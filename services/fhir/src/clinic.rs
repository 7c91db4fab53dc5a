//! The clinic's calendar: "today" and every day boundary are the clinic's local dates, never
//! UTC's. A clinic minutes into its Tuesday while UTC is still on Monday records Tuesday's
//! exam; read on UTC dates it would be "in the future", and consecutive days would be judged
//! across the wrong midnight.

use time::{Date, OffsetDateTime, UtcOffset};

/// Where the clinic's dates come from.
#[derive(Debug, Clone)]
pub enum ClinicZone {
    /// The tenant's IANA time zone (trust file `timezone`): every instant is read in it,
    /// daylight-saving changes included.
    Named(jiff::tz::TimeZone),
    /// No zone configured: each record keeps the date of the offset the EHR wrote it with,
    /// and "today" is read in the offset of the newest timestamp the EHR sent (UTC when it
    /// sent none).
    FromRecords,
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an IANA time zone name")]
pub struct UnknownZone(pub String);

impl ClinicZone {
    /// A zone by IANA name (`Europe/Berlin`), from the bundled time-zone database.
    pub fn named(name: &str) -> Result<ClinicZone, UnknownZone> {
        jiff::tz::TimeZone::get(name)
            .map(ClinicZone::Named)
            .map_err(|_| UnknownZone(name.to_owned()))
    }

    /// The zone for a tenant: its configured name, else the records' offsets. A name that
    /// does not resolve (the trust file is checked at start, so only a database gap) falls back
    /// to the records too.
    pub fn for_tenant(name: Option<&str>) -> ClinicZone {
        name.and_then(|n| ClinicZone::named(n).ok())
            .unwrap_or(ClinicZone::FromRecords)
    }

    /// The IANA name, when there is one (for the audit trail and the trace).
    pub fn name(&self) -> Option<&str> {
        match self {
            ClinicZone::Named(tz) => tz.iana_name(),
            ClinicZone::FromRecords => None,
        }
    }

    /// `instant` on the clinic's clock (UTC without a named zone: staff pages then say so).
    pub fn local(&self, instant: OffsetDateTime) -> OffsetDateTime {
        match self {
            ClinicZone::Named(tz) => {
                let offset = jiff::Timestamp::from_second(instant.unix_timestamp())
                    .map(|ts| tz.to_offset(ts).seconds())
                    .unwrap_or(0);
                instant.to_offset(UtcOffset::from_whole_seconds(offset).unwrap_or(UtcOffset::UTC))
            }
            ClinicZone::FromRecords => instant.to_offset(UtcOffset::UTC),
        }
    }

    /// The zone's name as a page names it: the IANA name, or UTC.
    pub fn label(&self) -> &str {
        self.name().unwrap_or("UTC")
    }

    /// The clinic's date of `instant`; `fallback` is the offset to read it in without a name.
    pub fn date_of(&self, instant: OffsetDateTime, fallback: UtcOffset) -> Date {
        match self {
            ClinicZone::Named(tz) => {
                let offset = jiff::Timestamp::from_second(instant.unix_timestamp())
                    .map(|ts| tz.to_offset(ts).seconds())
                    .unwrap_or(0);
                let offset = UtcOffset::from_whole_seconds(offset).unwrap_or(UtcOffset::UTC);
                instant.to_offset(offset).date()
            }
            ClinicZone::FromRecords => instant.to_offset(fallback).date(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn a_named_zone_reads_instants_on_the_clinics_calendar_with_daylight_saving() {
        let sydney = ClinicZone::named("Australia/Sydney").unwrap();
        // 21:30 UTC on 1 December is 08:30 on 2 December in Sydney (AEDT, UTC+11).
        let now = datetime!(2026-12-01 21:30 UTC);
        assert_eq!(sydney.date_of(now, UtcOffset::UTC), date!(2026 - 12 - 02));
        // In July Sydney is UTC+10: 13:30 UTC is 23:30 the same day, 14:30 UTC the next.
        assert_eq!(
            sydney.date_of(datetime!(2026-07-01 13:30 UTC), UtcOffset::UTC),
            date!(2026 - 07 - 01)
        );
        assert_eq!(
            sydney.date_of(datetime!(2026-07-01 14:30 UTC), UtcOffset::UTC),
            date!(2026 - 07 - 02)
        );
        assert_eq!(sydney.name(), Some("Australia/Sydney"));
    }

    #[test]
    fn without_a_name_the_fallback_offset_decides() {
        let z = ClinicZone::FromRecords;
        let t = datetime!(2026-12-01 21:30 UTC);
        assert_eq!(z.date_of(t, UtcOffset::UTC), date!(2026 - 12 - 01));
        let plus10 = UtcOffset::from_hms(10, 0, 0).unwrap();
        assert_eq!(z.date_of(t, plus10), date!(2026 - 12 - 02));
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(ClinicZone::named("Mars/Olympus_Mons").is_err());
        assert!(ClinicZone::named("").is_err());
        assert!(matches!(
            ClinicZone::for_tenant(Some("nope")),
            ClinicZone::FromRecords
        ));
    }
}
