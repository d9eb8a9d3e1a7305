//! Refusals before the app: the service between actix-http and the actix-web `App`.
//!
//! A client whose bucket is empty is answered by the route's `RateLimited` only after
//! actix-web built its request, ran the outer middleware, routed it through the `/api`
//! scope and its CORS: most of the always-refused 429's cost (BENCHMARKS.md, issue 14).
//! For the request kinds whose route, cost and key their head decides
//! (`rate_limit::charge_before_app`: an anonymous `GET` of one of
//! `rate_limit::EARLY_ROUTES`, per-instance limits), this service spends from the bucket
//! first. A refusal is answered here with the same
//! 429 (`middleware::early_refusal`), counted and logged as the app would; an admission
//! goes on to the app with its decision recorded, so the route spends nothing more.
//! Every other request goes straight on.
//!
//! Cheaper still, `GuardedStream` asks [`EarlyRefusals::answer_simple`] about each
//! complete simple `GET` head (`framing::SimpleGet`) of a connection on which nothing has
//! been passed to actix-http yet: a refusal is then written as bytes (the same status,
//! headers and body actix-http would write for this service's answer) without actix-http
//! decoding, dispatching or encoding anything; an admission is spent there and carried
//! to this service on the connection's handle (`ConnHandle::take_precharged`).

use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use actix_http::body::{EitherBody, MessageBody};
use actix_http::{HttpMessage, Request, Response};
use actix_service::{Service, ServiceFactory};
use futures_util::future::{Either, LocalBoxFuture, MapOk};
use futures_util::TryFutureExt;

use crate::http::conn::framing::SimpleGet;
use crate::http::conn::guard::ConnHandle;
use crate::http::middleware::{answer_refused_early, early_refusal_bytes, log_request};
use crate::http::rate_limit::{charge_before_app, charge_simple_get, RefusedEarly, SimpleCharge};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimits;

/// What the refusals before the app need: the limiters, and the metrics they count in.
#[derive(Clone)]
pub struct EarlyRefusals {
    pub limits: Arc<RateLimits>,
    pub metrics: Arc<Metrics>,
}

impl EarlyRefusals {
    /// Answers a refused request: the app's 429, counted and logged as the app would.
    fn answer<B>(
        &self,
        req: &Request,
        refused: &RefusedEarly,
        started: Instant,
    ) -> Response<EitherBody<B>> {
        let resp: Response<_> = answer_refused_early(
            req.headers(),
            req.conn_data::<ConnHandle>(),
            req.method().as_str(),
            req.path(),
            refused,
            started,
            Some(&self.metrics),
        )
        .into();
        resp.map_body(|_, body| EitherBody::right(body))
    }

    /// For the connection layer: charges a simple `GET` head of a connection on which
    /// actix-http has been handed nothing yet, as [`charge_before_app`] would. A refusal
    /// is appended to `out` as the bytes actix-http would write for [`Self::answer`]'s
    /// response, counted and logged the same way (true: answered). An admission is left
    /// on `conn` for [`EarlyService`] (false: pass the head on); so is every request not
    /// charged here.
    pub fn answer_simple(
        &self,
        head: &SimpleGet<'_>,
        peer: Option<std::net::SocketAddr>,
        conn: &ConnHandle,
        out: &mut Vec<u8>,
    ) -> bool {
        let started = Instant::now();
        match charge_simple_get(head.path, peer, &self.limits) {
            None => false,
            Some(SimpleCharge::Admitted(pre)) => {
                conn.set_precharged(pre);
                false
            }
            Some(SimpleCharge::Refused(refused)) => {
                let request_id = early_refusal_bytes(
                    &refused.decision,
                    head.request_id,
                    refused.route.cors,
                    out,
                );
                log_request(
                    Some(&self.metrics),
                    "GET",
                    head.path,
                    429,
                    started,
                    &request_id,
                );
                true
            }
        }
    }
}

/// Wraps the app's factory: every worker's app gets an [`EarlyService`] in front.
pub struct EarlyFactory<F, B> {
    inner: F,
    early: Option<EarlyRefusals>,
    _body: PhantomData<fn() -> B>,
}

impl<F, B> EarlyFactory<F, B> {
    /// `early: None` passes every request on untouched.
    pub fn new(inner: F, early: Option<EarlyRefusals>) -> EarlyFactory<F, B> {
        EarlyFactory {
            inner,
            early,
            _body: PhantomData,
        }
    }
}

impl<F, B> ServiceFactory<Request> for EarlyFactory<F, B>
where
    F: ServiceFactory<Request>,
    F::Response: Into<Response<B>>,
    F::Future: 'static,
    B: MessageBody,
{
    type Response = Response<EitherBody<B>>;
    type Error = F::Error;
    type Config = F::Config;
    type Service = EarlyService<F::Service, B>;
    type InitError = F::InitError;
    type Future = LocalBoxFuture<'static, Result<Self::Service, Self::InitError>>;

    fn new_service(&self, cfg: F::Config) -> Self::Future {
        let inner = self.inner.new_service(cfg);
        let early = self.early.clone();
        Box::pin(async move {
            Ok(EarlyService {
                inner: inner.await?,
                early,
                _body: PhantomData,
            })
        })
    }
}

/// The service in front of one worker's app; see the module docs.
pub struct EarlyService<S, B> {
    inner: S,
    early: Option<EarlyRefusals>,
    _body: PhantomData<fn() -> B>,
}

type Passed<S, B> = MapOk<
    <S as Service<Request>>::Future,
    fn(<S as Service<Request>>::Response) -> Response<EitherBody<B>>,
>;

fn passed_on<R: Into<Response<B>>, B>(res: R) -> Response<EitherBody<B>> {
    res.into().map_body(|_, body| EitherBody::left(body))
}

impl<S, B> Service<Request> for EarlyService<S, B>
where
    S: Service<Request>,
    S::Response: Into<Response<B>>,
    B: MessageBody,
{
    type Response = Response<EitherBody<B>>;
    type Error = S::Error;
    type Future = Either<Passed<S, B>, Ready<Result<Self::Response, S::Error>>>;

    actix_service::forward_ready!(inner);

    fn call(&self, req: Request) -> Self::Future {
        if let Some(early) = &self.early {
            let started = Instant::now();
            let precharged = req
                .conn_data::<ConnHandle>()
                .and_then(ConnHandle::take_precharged)
                .is_some_and(|pre| pre.apply(&req));
            if precharged {
                // Spent by the connection layer for this very head: nothing more here.
            } else if let Some(refused) = charge_before_app(&req, &early.limits) {
                return Either::Right(ready(Ok(early.answer(&req, &refused, started))));
            }
        }
        Either::Left(
            self.inner
                .call(req)
                .map_ok(passed_on::<S::Response, B> as fn(_) -> _),
        )
    }
}
