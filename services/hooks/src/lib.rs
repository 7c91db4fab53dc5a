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
