"""Assemble and run the service: learner, driver, broker, transport, demo sensor, display."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from delgrad.drivers import driver_from_config
from delgrad.errors import ConfigError
from delgrad.protocols import (
    EmbeddedBroker,
    Publisher,
    parse_broker_url,
    transport_from_url,
)
from delgrad.runtime import Learner, load_network, resolve_config, warm_up
from delgrad.runtime.service import (
    OnlineLearner,
    RunConfig,
    Service,
    next_boot_epoch,
    status_will,
)
from delgrad.tools._sensor import YinYangSource, stream_trials


def device_client_id(config: RunConfig, url: str) -> str:
    """The device's MQTT client id: ``[broker] client_id``; else the device id when it is
    the URL's user name (the recipe's device account, and the id a broker with
    ``use_username_as_clientid`` gives it anyway); else ``delgrad-run-{device}`` (an
    account shared by several devices must not give them one id)."""
    if config.broker.client_id:
        return config.broker.client_id
    if parse_broker_url(url).username == config.device:
        return config.device
    return f"delgrad-run-{config.device}"


def build_online(config: RunConfig) -> OnlineLearner:
    """The learner (recipe, optional network file) with its driver.

    Raises:
        ConfigError: unknown recipe or driver, or a network file that does not fit.
    """
    recipe = resolve_config(config.model.recipe).replace(seed=config.model.seed)
    # learning.threads: the backward pass, and the ideal emulator's runs (predictions
    # and the re-observations before a step)
    learner = Learner(recipe, threads=config.learning.threads)
    if config.model.network_file:
        learner.load_network(load_network(config.model.network_file))
    options: dict[str, Any] = {}
    if config.driver.name == "emulator-bss2":
        options["chip_seed"] = config.driver.chip_seed
        if config.driver.drift.active:
            options["drift"] = config.driver.drift
    twin = None
    if config.driver.name == "emulator-ideal":
        options["threads"] = learner.threads
        # deterministic: a twin re-observes exactly as the driver would, beside its runs
        twin = driver_from_config(config.driver.name, **options)
    driver = driver_from_config(config.driver.name, **options)
    online = OnlineLearner(
        learner,
        driver,
        step_every=config.learning.step_every,
        refresh=config.learning.refresh,
        reobserve=twin,
    )
    online.set_lr_scale(config.learning.lr_scale)
    return online


async def serve(
    config: RunConfig,
    *,
    demo_rate: float = 0.0,
    duration_s: float | None = None,
    on_tick: Callable[[Service], None] | None = None,
    tick_s: float = 0.5,
    install_signals: bool = True,
) -> Service:
    """Run the service until SIGINT/SIGTERM or ``duration_s``; returns it (for its metrics).

    With an empty ``broker.url`` an embedded broker is started on 127.0.0.1. With
    ``demo_rate > 0`` a built-in Yin-Yang sensor streams that many trials/s (and
    their labels) into the broker.
    """
    online = build_online(config)
    await asyncio.get_running_loop().run_in_executor(None, _warm, online)
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, Any] = {}
        if config.broker.url:
            url = config.broker.url
        else:
            options["protocol"] = "3.1.1"  # amqtt speaks MQTT 3.1.1 only: skip the v5 probe
            broker = EmbeddedBroker("127.0.0.1", config.broker.embedded_port)
            await stack.enter_async_context(broker)
            url = broker.url
        client_id = device_client_id(config, url)
        folder = Path(config.checkpoint.dir) if config.checkpoint.dir else None
        epoch = next_boot_epoch(folder)  # before the will: it carries the boot's last number
        will = status_will(config.device, epoch)
        link = config.broker
        transport = transport_from_url(
            url,
            client_id=client_id,
            will=will,
            tls_ca_file=link.tls_ca_file,
            tls_cert_file=link.tls_cert_file,
            tls_key_file=link.tls_key_file,
            tls_insecure=link.tls_insecure,
            max_packet_bytes=link.max_packet_bytes,
            keepalive_s=link.keepalive_s,
            **options,
        )
        await stack.enter_async_context(transport)
        service = Service(config, transport, online, epoch=epoch)
        if config.checkpoint.dir:
            restored: bool = await asyncio.get_running_loop().run_in_executor(
                None, service.load_checkpoint
            )
            if restored:
                service.counters.inc("restarts")
        stop = asyncio.Event()
        armed: list[threading.Timer] = []
        bound_s = config.supervision.shutdown_timeout_s
        previous: dict[int, Any] = {}
        if install_signals:
            loop = asyncio.get_running_loop()

            def on_signal(signum: int, frame: object) -> None:
                # a plain signal handler, not the loop's: the bound is armed even if
                # the event loop is stuck and would never run a loop callback
                if not armed:
                    armed.append(arm_shutdown_watchdog(bound_s))
                loop.call_soon_threadsafe(stop.set)

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        tasks = [asyncio.create_task(service.run(), name="service")]
        if demo_rate > 0:
            tasks.append(asyncio.create_task(_demo_sensor(url, config, demo_rate, stop)))
        started = time.monotonic()
        try:
            while not stop.is_set() and not tasks[0].done():
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), tick_s)
                if on_tick is not None:
                    service.metrics()
                    on_tick(service)
        finally:
            stop.set()
            if install_signals and not armed:  # a process of its own: the bound holds
                armed.append(arm_shutdown_watchdog(bound_s))
            service.request_stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if tasks[0].done() and tasks[0].exception() is not None:
            raise tasks[0].exception()  # type: ignore[misc]
        return service


#: Exit code when the shutdown bound is exceeded (ExitCode.FAILED).
FORCED_EXIT_CODE = 1


def arm_shutdown_watchdog(timeout_s: float) -> threading.Timer:
    """End the process ``timeout_s`` from now unless it has ended by itself.

    SIGINT/SIGTERM (or a failed service) start an orderly shutdown: drain, checkpoint,
    ``dead`` status. A task stuck in a driver call or a hung broker link must not
    keep the process alive beyond the bound: then it exits with
    :data:`FORCED_EXIT_CODE` at once (the broker publishes the last will, ``lost``;
    the last checkpoint written stays). A daemon thread, so a process that ends in
    time is not held up.
    """

    def force() -> None:
        print(
            f"delgrad run: shutdown took longer than {timeout_s:g} s; exiting now",
            file=sys.stderr,
            flush=True,
        )
        os._exit(FORCED_EXIT_CODE)

    timer = threading.Timer(timeout_s, force)
    timer.daemon = True
    timer.start()
    return timer


def _warm(online: OnlineLearner) -> None:
    warm_up(online.driver)


async def _demo_sensor(url: str, config: RunConfig, rate: float, stop: asyncio.Event) -> None:
    repeat = 1
    with contextlib.suppress(ConfigError):
        repeat = resolve_config(config.model.recipe).network.input_repeat
    options: dict[str, Any] = {} if config.broker.url else {"protocol": "3.1.1"}
    client_id = f"delgrad-demo-sensor-{config.device}"
    async with transport_from_url(url, client_id=client_id, **options) as tr:
        await stream_trials(
            Publisher(tr, "demo-sensor"),
            config.device,
            YinYangSource("train", input_repeat=repeat, seed=0),
            rate=rate,
            batch=max(1, int(rate / 50)),
            stop=stop,
        )


def print_line(service: Service) -> None:
    """One plain status line (for --quiet and non-terminals)."""
    m = service.last_metrics
    print(
        f"{m.get('uptime_s', 0):7.1f} s  accuracy {100 * m.get('accuracy', 0):5.1f} %  "
        f"{m.get('samples_per_s', 0):8,.0f} trials/s  "
        f"p99 {m.get('latency.p99_ms', 0):6.1f} ms  steps {int(m.get('learning.steps', 0))}  "
        f"dropped {int(m.get('dropped.overload', 0))}",
        flush=True,
    )


def is_terminal() -> bool:
    """Whether stdout is an interactive terminal."""
    return sys.stdout.isatty()
