//! Which version of each guideline answers for whom. Versions live side by side; per
//! guideline one answers for a tenant at a time: the issuer's `guidelines` map in the trust
//! file, else `STRIDE_GUIDELINE_VERSIONS`, else the newest active version. So one clinic
//! stays on 1.0.0 while another moves to 1.0.1, and every version stays loadable for replay.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use stride_store::TenantId;

use futures_util::StreamExt;
use serde_json::json;
use stride_guideline::model::Status;
use stride_guideline::{RuleSet, RuleSetVersion};
use stride_store::{AuditQuery, NewAuditEntry, Store, StoreError};

use crate::catalog::Catalog;

/// The audit action of a change of the version in force for a tenant.
const VERSION_IN_FORCE: stride_store::audit::Action = stride_store::audit::Action::GuidelineVersion;

/// Where a version in force was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    TrustFile,
    Setting,
    NewestActive,
    /// Put in force for the clinic through recorded sign-offs (`governance`).
    SignedOff,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::TrustFile => "trust file",
            Source::Setting => "STRIDE_GUIDELINE_VERSIONS",
            Source::NewestActive => "newest active",
            Source::SignedOff => "sign-off",
        }
    }
}

pub struct Pins {
    global: BTreeMap<String, RuleSetVersion>,
    /// Issuer → its own pins.
    by_issuer: HashMap<String, BTreeMap<String, RuleSetVersion>>,
    /// Candidates evaluated in shadow: for everyone, and per issuer (over it).
    shadow_global: BTreeMap<String, RuleSetVersion>,
    shadow_by_issuer: HashMap<String, BTreeMap<String, RuleSetVersion>>,
    /// Every CDS client's tenant and issuer, for reporting and the audit of changes.
    tenants: Vec<(TenantId, String)>,
    /// (tenant, guideline) → the version its sign-offs put in force: over every other choice,
    /// and changed while serving (an activation, or another replica's, read back from the
    /// store), so a lock rather than a value fixed at start.
    activated:
        std::sync::RwLock<HashMap<(TenantId, String), (RuleSetVersion, time::OffsetDateTime)>>,
}

impl Pins {
    /// Check every pin against the loaded versions: a pin to a version that is not loaded, or
    /// a draft, stops the start (a clinic must never silently fall back to another version).
    pub fn new(
        catalog: &Catalog,
        global: &BTreeMap<String, RuleSetVersion>,
        shadow: &BTreeMap<String, RuleSetVersion>,
        verifier: &stride_auth::Verifier,
    ) -> Result<Pins, String> {
        // A candidate may be a draft (that is what shadow is for), but it must be loaded.
        let loaded = |id: &str, v: &RuleSetVersion, origin: &str| -> Result<(), String> {
            catalog
                .get(id, v)
                .map(|_| ())
                .ok_or_else(|| format!("{origin}: {id} {v} is not a loaded rule-set version"))
        };
        for (id, v) in shadow {
            loaded(id, v, "STRIDE_SHADOW_VERSIONS")?;
        }
        let mut shadow_by_issuer = HashMap::new();
        let check = |id: &str, v: &RuleSetVersion, origin: &str| -> Result<(), String> {
            match catalog.get(id, v) {
                None => Err(format!(
                    "{origin}: {id} {v} is not a loaded rule-set version"
                )),
                Some(rs) if rs.doc.status == Status::Draft => Err(format!(
                    "{origin}: {id} {v} is a draft; only active or retired versions answer"
                )),
                Some(_) => Ok(()),
            }
        };
        for (id, v) in global {
            check(id, v, "STRIDE_GUIDELINE_VERSIONS")?;
        }
        let mut by_issuer = HashMap::new();
        let mut tenants = Vec::new();
        for cfg in verifier.issuers() {
            if cfg.kind != stride_auth::Kind::CdsClient {
                continue;
            }
            tenants.push((cfg.tenant(), cfg.iss.clone()));
            // An issuer's map of `guideline-id` → version, each checked as `ok` says.
            let versions = |map: &BTreeMap<String, String>,
                            origin: &str,
                            ok: &dyn Fn(&str, &RuleSetVersion, &str) -> Result<(), String>|
             -> Result<BTreeMap<String, RuleSetVersion>, String> {
                let mut out = BTreeMap::new();
                for (id, v) in map {
                    let v: RuleSetVersion = v.parse().map_err(|e| format!("{origin}: {e}"))?;
                    ok(id, &v, origin)?;
                    out.insert(id.clone(), v);
                }
                Ok(out)
            };
            let origin = format!("trust file, issuer {}", cfg.iss);
            by_issuer.insert(cfg.iss.clone(), versions(&cfg.guidelines, &origin, &check)?);
            let origin = format!("{origin}, shadow");
            shadow_by_issuer.insert(cfg.iss.clone(), versions(&cfg.shadow, &origin, &loaded)?);
        }
        tenants.sort();
        tenants.dedup();
        Ok(Pins {
            global: global.clone(),
            by_issuer,
            shadow_global: shadow.clone(),
            shadow_by_issuer,
            tenants,
            activated: Default::default(),
        })
    }

    /// The activations in force: the newest per clinic and guideline, for the file content it
    /// was signed off for (a version whose file changed since answers no more until signed off
    /// again). Returns how many clinics' versions it set.
    pub fn load_activations(&self, catalog: &Catalog, all: &[stride_store::Activation]) -> usize {
        let mut newest: HashMap<(TenantId, String), &stride_store::Activation> = HashMap::new();
        for a in all {
            let key = (a.tenant.clone(), a.guideline_id.clone());
            if newest
                .get(&key)
                .is_none_or(|b| b.created_at <= a.created_at)
            {
                newest.insert(key, a);
            }
        }
        let Ok(mut map) = self.activated.write() else {
            return 0;
        };
        let mut set = 0;
        for (key, a) in newest {
            let Ok(v) = a.version.parse::<RuleSetVersion>() else {
                continue;
            };
            match catalog.get(&a.guideline_id, &v) {
                // Merged, never replaced: an activation made here after the store was read is
                // newer than what was read, and stays.
                Some(rs) if rs.content_hash == a.content_hash => {
                    if map.get(&key).is_none_or(|(_, at)| *at <= a.created_at) {
                        map.insert(key, (v, a.created_at));
                        set += 1;
                    }
                }
                _ => {
                    if map.remove(&key).is_some() {
                        tracing::warn!(
                            guideline = %a.guideline_id, version = %a.version,
                            "an activated version is not loaded with the content signed off: it does not answer"
                        );
                    }
                }
            }
        }
        set
    }

    /// Put `version` in force for `tenant` now (after its activation, made `at`, was recorded).
    pub fn activate(
        &self,
        tenant: &TenantId,
        guideline: &str,
        version: RuleSetVersion,
        at: time::OffsetDateTime,
    ) {
        if let Ok(mut guard) = self.activated.write() {
            guard.insert((tenant.to_owned(), guideline.to_owned()), (version, at));
        }
    }

    fn activated_for(&self, tenant: &TenantId, guideline: &str) -> Option<RuleSetVersion> {
        self.activated
            .read()
            .ok()?
            .get(&(tenant.to_owned(), guideline.to_owned()))
            .map(|(v, _)| *v)
    }

    /// The version of `guideline` in force for `tenant` (through any of its issuers).
    pub fn in_force_for_tenant<'c>(
        &self,
        catalog: &'c Catalog,
        guideline: &str,
        tenant: &TenantId,
    ) -> Option<(&'c Arc<RuleSet>, Source)> {
        if let Some(v) = self.activated_for(tenant, guideline) {
            if let Some(rs) = catalog.get(guideline, &v) {
                return Some((rs, Source::SignedOff));
            }
        }
        let issuer = self
            .tenants
            .iter()
            .find(|(t, _)| t == tenant)
            .map(|(_, iss)| iss.as_str());
        self.in_force(catalog, guideline, issuer)
    }

    /// The version of `guideline` in force for `tenant` as impact reports and sign-offs name
    /// it: its number, or empty when none is (a guideline's first version).
    pub fn version_in_force(
        &self,
        catalog: &Catalog,
        guideline: &str,
        tenant: &TenantId,
    ) -> String {
        self.in_force_for_tenant(catalog, guideline, tenant)
            .map(|(rs, _)| rs.doc.version.to_string())
            .unwrap_or_default()
    }

    /// The candidate of `guideline` evaluated in shadow for `issuer` (`None` for a caller not
    /// yet known: everyone's), unless it is the version in force.
    pub fn shadow<'c>(
        &self,
        catalog: &'c Catalog,
        guideline: &str,
        issuer: Option<&str>,
    ) -> Option<&'c Arc<RuleSet>> {
        let own = issuer
            .and_then(|i| self.shadow_by_issuer.get(i))
            .and_then(|m| m.get(guideline));
        let v = own.or_else(|| self.shadow_global.get(guideline))?;
        let candidate = catalog.get(guideline, v)?;
        let (in_force, _) = self.in_force(catalog, guideline, issuer)?;
        (candidate.doc.version != in_force.doc.version).then_some(candidate)
    }

    /// Every candidate any caller may evaluate for `guideline`: discovery's prefetch asks
    /// for what they read too, so the shadow sees the data it would decide on.
    pub fn shadows<'c>(&self, catalog: &'c Catalog, guideline: &str) -> Vec<&'c Arc<RuleSet>> {
        let mut out: Vec<&'c Arc<RuleSet>> = std::iter::once(&self.shadow_global)
            .chain(self.shadow_by_issuer.values())
            .filter_map(|m| m.get(guideline))
            .filter_map(|v| catalog.get(guideline, v))
            .collect();
        out.sort_by_key(|rs| rs.doc.version);
        out.dedup_by_key(|rs| rs.doc.version);
        out
    }

    /// The version of `guideline` that answers for `issuer` (`None`: a caller not yet known,
    /// as discovery is), and where it was chosen.
    pub fn in_force<'c>(
        &self,
        catalog: &'c Catalog,
        guideline: &str,
        issuer: Option<&str>,
    ) -> Option<(&'c Arc<RuleSet>, Source)> {
        // What a clinic's sign-offs put in force answers first.
        if let Some(i) = issuer {
            let tenant = self.tenants.iter().find(|(_, iss)| iss == i);
            if let Some(v) = tenant.and_then(|(t, _)| self.activated_for(t, guideline)) {
                if let Some(rs) = catalog.get(guideline, &v) {
                    return Some((rs, Source::SignedOff));
                }
            }
        }
        let own = issuer
            .and_then(|i| self.by_issuer.get(i))
            .and_then(|m| m.get(guideline));
        if let Some(v) = own {
            return catalog.get(guideline, v).map(|rs| (rs, Source::TrustFile));
        }
        if let Some(v) = self.global.get(guideline) {
            return catalog.get(guideline, v).map(|rs| (rs, Source::Setting));
        }
        catalog
            .current(guideline)
            .map(|rs| (rs, Source::NewestActive))
    }

    /// Each CDS client's tenant and the version that answers for it.
    pub fn tenants<'c>(
        &self,
        catalog: &'c Catalog,
        guideline: &str,
    ) -> Vec<(TenantId, &'c Arc<RuleSet>, Source)> {
        self.tenants_with_shadow(catalog, guideline)
            .into_iter()
            .map(|(t, rs, src, _)| (t, rs, src))
            .collect()
    }

    /// Each CDS client's tenant, the version that answers for it and its candidate in shadow.
    #[allow(clippy::type_complexity)]
    pub fn tenants_with_shadow<'c>(
        &self,
        catalog: &'c Catalog,
        guideline: &str,
    ) -> Vec<(TenantId, &'c Arc<RuleSet>, Source, Option<&'c Arc<RuleSet>>)> {
        self.tenants
            .iter()
            .filter_map(|(tenant, iss)| {
                self.in_force(catalog, guideline, Some(iss))
                    .map(|(rs, src)| {
                        let shadow = self.shadow(catalog, guideline, Some(iss));
                        (tenant.clone(), rs, src, shadow)
                    })
            })
            .collect()
    }

    /// One audit entry per tenant and guideline whose version in force is not the one its
    /// chain last recorded (at start: configuration changes take effect there).
    pub async fn record_changes(
        &self,
        catalog: &Catalog,
        store: &dyn Store,
    ) -> Result<usize, StoreError> {
        let guidelines: Vec<String> = {
            let mut ids: Vec<String> = catalog.iter().map(|rs| rs.doc.id.clone()).collect();
            ids.dedup();
            ids
        };
        let mut written = 0;
        for id in &guidelines {
            for (tenant, rs, source) in self.tenants(catalog, id) {
                let q = AuditQuery {
                    tenant: Some(tenant.clone()),
                    action: Some(VERSION_IN_FORCE),
                    ..AuditQuery::default()
                };
                // Newest first: the first entry of this guideline is what was in force.
                let mut rows = store.audit_stream(&q, false);
                let mut previous = None;
                while let Some(row) = rows.next().await {
                    let a = row?;
                    if a.entry.details["guideline"] == json!(id) {
                        previous = a.entry.details["version"].as_str().map(str::to_owned);
                        break;
                    }
                }
                drop(rows);
                let now = rs.doc.version.to_string();
                if previous.as_deref() == Some(now.as_str()) {
                    continue;
                }
                let entry = NewAuditEntry {
                    id: stride_store::new_row_id(),
                    recorded_us: crate::now_us(),
                    action: VERSION_IN_FORCE,
                    outcome: "success".into(),
                    rule_set_id: Some(id.clone()),
                    rule_set_version: Some(now.clone()),
                    rule_set_hash: Some(rs.content_hash.clone()),
                    details: json!({"guideline": id, "version": now, "chosenBy": source.as_str()}),
                    ..NewAuditEntry::of(tenant)
                };
                let mut entry = entry;
                if let Some(p) = previous {
                    entry.details["previous"] = json!(p);
                }
                store.append_audit(&entry).await?;
                written += 1;
            }
        }
        Ok(written)
    }
}

/// `guideline-id=version,…` (STRIDE_GUIDELINE_VERSIONS).
pub fn parse_setting(s: &str) -> Result<BTreeMap<String, RuleSetVersion>, String> {
    let mut pins = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not guideline-id=version"))?;
        let v: RuleSetVersion = v.trim().parse().map_err(|e| format!("{e}"))?;
        if pins.insert(id.trim().to_owned(), v).is_some() {
            return Err(format!("{} is pinned twice", id.trim()));
        }
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_a_list_of_guideline_versions() {
        let pins = parse_setting("a=1.0.0, b = 2.1.3").unwrap();
        assert_eq!(pins["a"].to_string(), "1.0.0");
        assert_eq!(pins["b"].to_string(), "2.1.3");
        assert!(parse_setting("").unwrap().is_empty());
        for bad in ["a", "a=1.0", "a=1.0.0,a=1.0.1", "a=x"] {
            assert!(parse_setting(bad).is_err(), "{bad}");
        }
    }
}
