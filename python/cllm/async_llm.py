"""vLLM's ``AsyncLLM``: an asyncio engine for servers and streaming.

One background thread owns the LLMEngine and steps it while requests are
unfinished (the model runs with the GIL released, so the event loop keeps
running); ``generate`` is an async iterator of RequestOutput (cumulative by
default, vLLM's; ``SamplingParams(output_kind=RequestOutputKind.DELTA)``
yields only the new text and tokens). Leaving the iteration early (break,
task cancelled, client gone) aborts the request.
"""
from __future__ import annotations

import asyncio
import atexit
import queue
import threading
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, AsyncGenerator, Dict, Optional

from .engine import EngineArgs, LLMEngine, PromptType
from .outputs import RequestOutput
from .sampling_params import SamplingParams
from .tokenizer import Tokenizer


@dataclass
class AsyncEngineArgs(EngineArgs):
    """EngineArgs for AsyncLLM (vLLM's name)."""


class EngineDeadError(RuntimeError):
    """The engine stopped for good (a worker rank died, a step failed): vLLM's name."""


class _Stream:
    """Where one request's outputs go: an asyncio.Queue on its event loop."""

    __slots__ = ("loop", "queue")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.queue = loop, asyncio.Queue()

    def put(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody listens any more
            pass


class AsyncLLM:
    """Asynchronous engine (vLLM ``AsyncLLM``): AsyncLLM(model, **engine_args)
    or AsyncLLM.from_engine_args(AsyncEngineArgs(...)). Call shutdown() (or use
    ``async with``/``with``) to stop it; it also stops at interpreter exit."""

    def __init__(self, model: Optional[str] = None, engine_args: Optional[EngineArgs] = None, **kwargs: Any):
        if engine_args is None:
            if model is None:
                raise TypeError("AsyncLLM needs a model (or engine_args)")
            engine_args = AsyncEngineArgs(model=model, **kwargs)
        self.engine_args = engine_args
        self._engine = LLMEngine(engine_args)  # created here: errors raise in the caller
        self._tokenizer = self._engine.get_tokenizer()
        self._inbox: "queue.SimpleQueue" = queue.SimpleQueue()
        self._streams: Dict[str, _Stream] = {}
        self._dead: Optional[BaseException] = None
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="cllm-engine", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().shutdown())

    @classmethod
    def from_engine_args(cls, engine_args: EngineArgs, **kwargs: Any) -> "AsyncLLM":
        return cls(engine_args=engine_args)

    # ---- public API ----
    async def generate(self, prompt: PromptType, sampling_params: Optional[SamplingParams] = None,
                       request_id: Optional[str] = None, **kwargs: Any) -> AsyncGenerator[RequestOutput, None]:
        """Stream a request's outputs as the engine produces them; the last has
        finished=True. Raises ValueError for a bad request (the engine's
        message), EngineDeadError when the engine stopped."""
        if self._dead is not None:
            raise EngineDeadError(str(self._dead)) from self._dead
        if self._stopped:
            raise RuntimeError("AsyncLLM is shut down")
        request_id = str(request_id) if request_id is not None else _new_id()
        stream = _Stream(asyncio.get_running_loop())
        added: "Future[None]" = Future()
        self._inbox.put(("add", request_id, prompt, sampling_params or SamplingParams(), stream, added))
        await asyncio.wrap_future(added)
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise EngineDeadError(str(item)) from item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            if not finished:
                self._inbox.put(("abort", request_id))

    async def abort(self, request_id: str) -> None:
        """Abort a request; its generate() iterator ends without a final output."""
        self._inbox.put(("abort", str(request_id)))

    async def get_tokenizer(self) -> Tokenizer:
        return self._tokenizer

    async def check_health(self) -> None:
        if self._dead is not None:
            raise EngineDeadError(str(self._dead))
        self._engine.check_health()

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive() and self._dead is None

    @property
    def errored(self) -> bool:
        return self._dead is not None

    def shutdown(self) -> None:
        """Stop the engine thread (aborting what runs) and free the engine."""
        if self._stopped:
            return
        self._stopped = True
        self._inbox.put(("stop",))
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._engine = None  # the C engine and its workers go with the last reference

    def __enter__(self) -> "AsyncLLM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    async def __aenter__(self) -> "AsyncLLM":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.shutdown()

    # ---- the engine thread ----
    def _handle(self, cmd: tuple) -> bool:
        """Apply one inbox command; False on stop."""
        eng = self._engine
        if cmd[0] == "add":
            _, rid, prompt, params, stream, added = cmd
            try:
                if self._dead is not None:
                    raise EngineDeadError(str(self._dead))
                eng.add_request(rid, prompt, params)
                self._streams[rid] = stream
                added.set_result(None)
            except BaseException as e:  # the caller's await raises it
                added.set_exception(e)
        elif cmd[0] == "abort":
            eng.abort_request(cmd[1])
            self._streams.pop(cmd[1], None)
        elif cmd[0] == "stop":
            eng.abort_request(list(self._streams))
            for s in self._streams.values():
                s.put(RuntimeError("AsyncLLM was shut down"))
            self._streams.clear()
            return False
        return True

    def _loop(self) -> None:
        eng = self._engine
        while True:
            try:
                cmd = self._inbox.get(block=not eng.has_unfinished_requests())
            except queue.Empty:
                cmd = None
            if cmd is not None:
                if not self._handle(cmd):
                    return
                continue  # drain the inbox before the next step
            try:
                outs = eng.step()
            except BaseException as e:  # the engine is broken: fail every stream
                self._dead = e
                for s in self._streams.values():
                    s.put(e)
                self._streams.clear()
                eng.abort_request([r for r in list(eng._by_id)])
                continue
            for out in outs:
                s = self._streams.get(out.request_id)
                if s is not None:
                    s.put(out)
                    if out.finished:
                        del self._streams[out.request_id]


_ids = iter(range(1 << 62))
_ids_lock = threading.Lock()


def _new_id() -> str:
    with _ids_lock:
        return f"cllm-{next(_ids)}"
