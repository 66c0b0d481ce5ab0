"""Typed dependencies: everything a route needs, taken from the app it runs in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from api.auth import Principal, require_scope
from api.producer import EventProducer
from api.readmodel import ReadModel
from api.settings import ApiSettings

Clock = Callable[[], datetime]


async def get_settings(request: Request) -> ApiSettings:
    """The settings the app was built with."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_read_model(request: Request) -> ReadModel:
    """The app's read model."""
    model: ReadModel = request.app.state.read_model
    return model


async def get_producer(request: Request) -> EventProducer:
    """The app's event producer."""
    producer: EventProducer = request.app.state.producer
    return producer


async def get_clock(request: Request) -> Clock:
    """The app's clock (injectable, so tests fix "now")."""
    clock: Clock = request.app.state.clock
    return clock


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ReadModelDep = Annotated[ReadModel, Depends(get_read_model)]
ProducerDep = Annotated[EventProducer, Depends(get_producer)]
ClockDep = Annotated[Clock, Depends(get_clock)]
HealthReader = Annotated[Principal, Depends(require_scope("health:read"))]
AlertReader = Annotated[Principal, Depends(require_scope("alerts:read"))]
EventWriter = Annotated[Principal, Depends(require_scope("events:write"))]
