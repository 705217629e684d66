//! The Kubernetes platform against a mocked apiserver (kube's tower-test
//! mock): no cluster can run on our machines, so these tests assert the
//! exact requests the platform makes and feed it real-shaped answers.

mod apiserver;
mod files;
mod leader;
mod lifecycle;
mod observe;
mod pull_secret;
mod watch;
