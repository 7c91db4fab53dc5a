pub mod audit;
pub mod careplans;
pub mod cds;
pub mod fhir;
pub mod guidelines;
pub mod health;
pub mod openapi;
pub mod ui;
