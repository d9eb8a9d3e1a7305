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

use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use actix_http::body::{EitherBody, MessageBody};
use actix_http::{HttpMessage, Request, Response};
use actix_service::{Service, ServiceFactory};
use futures_util::future::{Either, LocalBoxFuture, MapOk};
use futures_util::TryFutureExt;

use crate::http::conn::guard::ConnHandle;
use crate::http::middleware::answer_refused_early;
use crate::http::rate_limit::{charge_before_app, RefusedEarly};
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
            if let Some(refused) = charge_before_app(&req, &early.limits) {
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
