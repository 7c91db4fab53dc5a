//! CDS Hooks 2.0 requests, read into types: the hooks Stride answers and the checks the
//! specification requires of a request. Pure functions over JSON, no I/O, so that they can be
//! tested and fuzzed on their own.

pub mod request;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PatientView,
    OrderSelect,
    OrderSign,
}

impl Hook {
    /// Every hook Stride answers: the one list the catalog's service declarations and the
    /// OpenAPI description read.
    pub const ALL: [Hook; 3] = [Hook::PatientView, Hook::OrderSelect, Hook::OrderSign];

    /// The hook of this name, if Stride answers it.
    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }

    /// The names of every hook, for messages and schemas.
    pub fn names() -> [&'static str; 3] {
        Hook::ALL.map(Hook::name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::PatientView => "patient-view",
            Hook::OrderSelect => "order-select",
            Hook::OrderSign => "order-sign",
        }
    }

    pub fn is_order(self) -> bool {
        matches!(self, Hook::OrderSelect | Hook::OrderSign)
    }
}

#[cfg(test)]
mod tests {
    use super::Hook;

    #[test]
    fn every_hook_is_found_by_its_name_and_only_those() {
        // A variant added to the enum and not to ALL fails to compile here.
        let listed = |h: Hook| match h {
            Hook::PatientView | Hook::OrderSelect | Hook::OrderSign => Hook::ALL.contains(&h),
        };
        assert!([Hook::PatientView, Hook::OrderSelect, Hook::OrderSign]
            .into_iter()
            .all(listed));
        for h in Hook::ALL {
            assert_eq!(Hook::from_name(h.name()), Some(h));
        }
        assert_eq!(
            Hook::names(),
            ["patient-view", "order-select", "order-sign"]
        );
        assert_eq!(Hook::from_name("encounter-start"), None);
        assert_eq!(Hook::from_name("Patient-View"), None);
    }
}
