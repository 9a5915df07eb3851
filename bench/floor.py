"""The physical floor of one lead's event work: the same hops as the system, done minimally.

Each delivery is: one transaction that inserts an inbox row, updates the lead's state row and inserts an
outbox row (raw asyncpg, prepared statements, `synchronous_commit` as the server has it), then a publish with
publisher confirms of the next event (persistent message, durable quorum queue, raw aio-pika) and the ack of
the delivery. A lead is a chain of `--deliveries` such deliveries spread over `--workers` consumers (one
connection and one queue each, as the services have), so the floor does per lead what the system does per
delivery, with nothing else: no ORM, no web framework, no validation, no tracing, no metrics.

Run by bench/cpu_per_lead.py as a separate process (its CPU is read from /proc); alone:
`.venv/bin/python bench/floor.py --database-url postgresql://postgres@127.0.0.1/floor --leads 100 --rate 5`
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import aio_pika
import asyncpg

DDL = """
CREATE TABLE IF NOT EXISTS inbox (handler text NOT NULL, event_id text NOT NULL, processed_at timestamptz NOT NULL,
                                  PRIMARY KEY (handler, event_id));
CREATE TABLE IF NOT EXISTS lead_state (lead_id text PRIMARY KEY, hops int NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, event_type text NOT NULL,
                                   payload text NOT NULL, created_at timestamptz NOT NULL)
"""

INSERT_INBOX = "INSERT INTO inbox (handler, event_id, processed_at) VALUES ($1, $2, now()) ON CONFLICT DO NOTHING"
UPDATE_STATE = "UPDATE lead_state SET hops = hops + 1 WHERE lead_id = $1"
INSERT_OUTBOX = "INSERT INTO outbox (event_id, event_type, payload, created_at) VALUES ($1, $2, $3, now())"


async def worker(index: int, workers: int, pool: asyncpg.Pool, connection: aio_pika.abc.AbstractConnection,
                 namespace: str, done: asyncio.Queue[str]) -> None:
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=32)
    exchange = await channel.declare_exchange(f"{namespace}floor", aio_pika.ExchangeType.DIRECT, durable=True)
    queue = await channel.declare_queue(f"{namespace}floor.{index}", durable=True,
                                        arguments={"x-queue-type": "quorum"})
    await queue.bind(exchange, routing_key=str(index))
    handler = f"floor-worker-{index}"

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        following = {"id": str(uuid.uuid4()), "lead_id": event["lead_id"], "left": event["left"] - 1}
        body = json.dumps(following)
        # asyncpg prepares each statement once per connection and reuses it (its statement cache)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(INSERT_INBOX, handler, event["id"])
            await conn.execute(UPDATE_STATE, event["lead_id"])
            if following["left"] > 0:
                await conn.execute(INSERT_OUTBOX, following["id"], "Hop", body)
        if following["left"] > 0:
            await exchange.publish(aio_pika.Message(body.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                                    message_id=following["id"]),
                                   routing_key=str((index + 1) % workers))
        else:
            done.put_nowait(event["lead_id"])
        await message.ack()

    await queue.consume(on_message)
    await asyncio.Event().wait()  # until cancelled


async def run(args: argparse.Namespace) -> None:
    pool = await asyncpg.create_pool(args.database_url, min_size=args.workers + 1, max_size=2 * args.workers + 1)
    async with pool.acquire() as conn:
        await conn.execute(DDL)
    connection = await aio_pika.connect(args.amqp_url)
    done: asyncio.Queue[str] = asyncio.Queue()
    tasks = [asyncio.create_task(worker(i, args.workers, pool, connection, args.namespace, done))
             for i in range(args.workers)]
    await asyncio.sleep(1)  # queues declared and consuming
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(f"{args.namespace}floor", aio_pika.ExchangeType.DIRECT, durable=True)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, input)  # the driver says go
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for i in range(args.leads):
            delay = started + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lead_id = str(uuid.uuid4())
            # intake: the lead's state row and its first event, as the system's intake commits them
            event = {"id": str(uuid.uuid4()), "lead_id": lead_id, "left": args.deliveries}
            async with conn.transaction():
                await conn.execute("INSERT INTO lead_state (lead_id, hops) VALUES ($1, 0)", lead_id)
                await conn.execute("INSERT INTO outbox (event_id, event_type, payload, created_at) "
                                   "VALUES ($1, 'Start', $2, now())", event["id"], json.dumps(event))
            await exchange.publish(aio_pika.Message(json.dumps(event).encode(),
                                                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                   routing_key="0")
    for _ in range(args.leads):
        await done.get()
    print(f"done {args.leads} {time.perf_counter() - started:.3f}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, input)  # the driver has read the CPU counters
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await connection.close()
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--namespace", default=f"floor{uuid.uuid4().hex[:6]}.")
    parser.add_argument("--leads", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--deliveries", type=int, default=36, help="deliveries per lead (the system's, measured)")
    parser.add_argument("--workers", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
