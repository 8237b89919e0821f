"""A custom executor written with pymesos, launched by test_pymesos.py.

For each task it reports TASK_RUNNING and sends the scheduler a framework message,
``{"event": "launched", "task_id", "task_data", "cwd", "sandbox"}``. When the
scheduler then sends it ``{"task_id", "text"}``, it answers
``{"event": "pong", "task_id", "text"}`` and reports TASK_FINISHED with ``text`` as
the status data. Once it has no task left it exits. Framework message data travel
base64-encoded: pymesos hands them over, and takes them, as base64 text.
"""

import json
import os
import threading
import time

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data

# How long the executor stays up after its last terminal update, so that the
# acknowledgement can reach it.
LINGER_SECONDS = 1.0


def send_message(driver, message):
    driver.sendFrameworkMessage(encode_data(json.dumps(message).encode()))


class EchoExecutor(Executor):
    def __init__(self):
        self.tasks = set()
        self.lock = threading.Lock()

    def launchTask(self, driver, task):
        task_id = task["task_id"]["value"]
        with self.lock:
            self.tasks.add(task_id)
        driver.sendStatusUpdate({"task_id": task["task_id"], "state": "TASK_RUNNING"})
        send_message(
            driver,
            {
                "event": "launched",
                "task_id": task_id,
                "task_data": decode_data(task.get("data", "")).decode(),
                "cwd": os.getcwd(),
                "sandbox": os.environ.get("MESOS_SANDBOX"),
            },
        )

    def frameworkMessage(self, driver, message):
        request = json.loads(decode_data(message))
        task_id = request["task_id"]
        send_message(driver, {"event": "pong", "task_id": task_id, "text": request["text"]})
        self.finish(driver, task_id, "TASK_FINISHED", data=encode_data(request["text"].encode()))

    def killTask(self, driver, task_id):
        self.finish(driver, task_id["value"], "TASK_KILLED")

    def finish(self, driver, task_id, state, **fields):
        driver.sendStatusUpdate({"task_id": {"value": task_id}, "state": state, **fields})
        with self.lock:
            self.tasks.discard(task_id)
            idle = not self.tasks
        if idle:
            threading.Thread(target=self.stop_later, args=(driver,), daemon=True).start()

    def stop_later(self, driver):
        time.sleep(LINGER_SECONDS)
        with self.lock:
            if not self.tasks:
                driver.stop()


if __name__ == "__main__":
    MesosExecutorDriver(EchoExecutor()).run()
