//! What both Lambdas share: one GitLab REST client, one reading of the token secret and one
//! retry policy, so the checkin and trigger Lambdas cannot drift apart.

pub mod gitlab;
pub mod retry;
pub mod token;
