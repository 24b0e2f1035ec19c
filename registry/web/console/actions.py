"""The console's actions (POST): the same use cases as the REST handlers, called with a
Caller built from the session's principal (same validation, audit entries and errors). A
refused action shows its message next to its form; a done one redirects to its page."""

from __future__ import annotations

from typing import Any

from litestar import Controller, post
from litestar.response import Redirect, Template

from registry.errors import RegistryError
from registry.rollouts.state import Rollout
from registry.web.api.context import PathStr, caller_of
from registry.web.console import forms
from registry.web.console.pages import (
    experiments_of,
    registry_of,
    render_experiment,
    render_model,
    render_rollout,
    rollouts_of,
)
from registry.web.console.render import Req, flash
from registry.web.console.security import UI_PATH
from registry.web.errors import status_of

Answer = Redirect | Template


def _form_values(form: Any) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


class ConsoleActions(Controller):
    path = "/"

    async def _model_action(
        self, request: Req, name: PathStr, which: str, exc: RegistryError
    ) -> Template:
        message = exc.message + (f" (field `{exc.field}`)" if exc.field else "")
        form = _form_values(await request.form())
        return await render_model(request, name, status_of(exc), {which: message}, form=form)

    @post("/models/{name:str}/stage")
    async def transition(self, request: Req, name: PathStr) -> Answer:
        try:
            number, change = forms.stage_change(await request.form())
            caller = await caller_of(request, change.reason)
            version = await registry_of(request).transition_stage(
                caller, name, number, change, None
            )
        except RegistryError as exc:
            return await self._model_action(request, name, "stage", exc)
        await flash(request, f"Version {version.version} of {name} is now in {version.stage}.")
        return Redirect(f"{UI_PATH}/models/{name}", status_code=303)

    @post("/models/{name:str}/alias")
    async def set_alias(self, request: Req, name: PathStr) -> Answer:
        try:
            alias, change = forms.alias_change(await request.form())
            caller = await caller_of(request, change.reason)
            version = await registry_of(request).set_alias(caller, name, alias, change, None)
        except RegistryError as exc:
            return await self._model_action(request, name, "alias", exc)
        await flash(request, f"Alias {alias} of {name} now points to version {version.version}.")
        return Redirect(f"{UI_PATH}/models/{name}", status_code=303)

    @post("/models/{name:str}/rollouts")
    async def start_rollout(self, request: Req, name: PathStr) -> Answer:
        try:
            spec = forms.rollout_spec(await request.form())
            reason = forms.text(await request.form(), "reason") or None
            rollout = await rollouts_of(request).start(await caller_of(request, reason), name, spec)
        except RegistryError as exc:
            return await self._model_action(request, name, "rollout", exc)
        await flash(request, f"Rollout of version {spec.candidate} started.")
        return Redirect(f"{UI_PATH}/rollouts/{rollout.id}", status_code=303)

    @post("/rollouts/{rollout_id:str}/{verb:str}")
    async def steer(self, request: Req, rollout_id: PathStr, verb: PathStr) -> Answer:
        rollouts = rollouts_of(request)
        moves = {
            "pause": rollouts.pause,
            "resume": rollouts.resume,
            "abort": rollouts.abort,
            "promote": rollouts.promote,
        }
        move = moves.get(verb)
        if move is None:
            return await render_rollout(
                request, rollout_id, 404, {"steer": f"unknown action {verb!r}"}
            )
        try:
            reason = forms.text(await request.form(), "reason") or None
            moved: Rollout = await move(await caller_of(request, reason), rollout_id)
        except RegistryError as exc:
            return await render_rollout(request, rollout_id, status_of(exc), {"steer": exc.message})
        await flash(
            request, f"Rollout {rollout_id}: {verb} done, now {moved.phase} at {moved.weight:g} %."
        )
        return Redirect(f"{UI_PATH}/rollouts/{rollout_id}", status_code=303)

    @post("/experiments/{experiment_id:str}/stop")
    async def stop_experiment(self, request: Req, experiment_id: PathStr) -> Answer:
        try:
            form = await request.form()
            promote = forms.promote_version(form)
            reason = forms.text(form, "reason") or None
            caller = await caller_of(request, reason)
            await experiments_of(request).stop(caller, experiment_id, promote)
        except RegistryError as exc:
            message = exc.message + (f" (field `{exc.field}`)" if exc.field else "")
            return await render_experiment(
                request, experiment_id, status_of(exc), {"decide": message}
            )
        done = "stopped" if promote is None else f"stopped; version {promote} is Production"
        await flash(request, f"Experiment {experiment_id} {done}.")
        return Redirect(f"{UI_PATH}/experiments/{experiment_id}", status_code=303)
