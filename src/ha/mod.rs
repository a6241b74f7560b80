//! The PostgreSQL HA steps of a Privilege Secure pair. So far: `pg_hba.conf`, parsed,
//! simulated and edited ([`hba`]).

pub mod hba;
