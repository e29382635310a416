// @platformatic/kafka against Floe: admin, configs, keyed produce with headers, a group of two with a member leaving.
// Prints one JSON line of what it saw; tests/polyglot asserts on it. Usage: node platformatic_scenario.js HOST:PORT TOPIC
'use strict'
const util = require('node:util')
const {
  Admin, Producer, Consumer, ConfigResourceTypes, stringSerializers, stringDeserializers
} = require('@platformatic/kafka')

const [bootstrap, topic] = process.argv.slice(2)
const base = { bootstrapBrokers: [bootstrap], retries: 10, retryDelay: 250 }

async function until (what, predicate, ms = 120000) {
  const end = Date.now() + ms
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function describe (admin, resourceType, resourceName) {
  const [found] = await admin.describeConfigs({ resources: [{ resourceType, resourceName }] })
  return Object.fromEntries(found.configs.map((c) => [c.name, c]))
}

function assigned (consumer) {
  return (consumer.assignments || []).reduce((sum, a) => sum + a.partitions.length, 0)
}

async function member (groupId, seen) {
  const consumer = new Consumer({
    ...base, clientId: `floe-platformatic-${seen.name}`, groupId, deserializers: stringDeserializers,
    sessionTimeout: 10000, heartbeatInterval: 500, rebalanceTimeout: 20000
  })
  const stream = await consumer.consume({ topics: [topic], mode: 'committed', fallbackMode: 'earliest', autocommit: 200, maxWaitTime: 500 })
  stream.on('data', (m) => { seen.push({ key: m.key, value: m.value, n: m.headers.get('n') }) })
  return { consumer, stream }
}

async function main () {
  const out = {}
  const admin = new Admin({ ...base, clientId: 'floe-platformatic-admin' })
  await admin.createTopics({ topics: [topic], partitions: 2, replicas: 1, configs: [{ name: 'retention.ms', value: '3600000' }] })
  out.listed = (await admin.listTopics()).includes(topic)
  let configs = await describe(admin, ConfigResourceTypes.TOPIC, topic)
  out.configCount = Object.keys(configs).length
  out.retention = configs['retention.ms'].value
  out.retentionSource = configs['retention.ms'].configSource
  const metadata = await admin.metadata({ topics: [topic] })
  const broker = await describe(admin, ConfigResourceTypes.BROKER, String([...metadata.brokers.keys()][0]))
  out.advertised = broker['advertised.listeners']?.value
  out.numPartitions = broker['num.partitions']?.value
  await admin.alterConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configs: [{ name: 'retention.ms', value: '7200000' }] }] })
  configs = await describe(admin, ConfigResourceTypes.TOPIC, topic)
  out.altered = configs['retention.ms'].value
  try {
    await admin.incrementalAlterConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configs: [{ name: 'bogus.config', configOperation: 0, value: '1' }] }] })
    out.bogusError = null
  } catch (e) {
    out.bogusError = util.inspect(e, { depth: 8 }) // the broker's message sits in the nested response
  }

  const producer = new Producer({ ...base, clientId: 'floe-platformatic-producer', serializers: stringSerializers })
  const batch = (from) => Array.from({ length: 10 }, (_, i) => ({
    topic, key: `k${from + i}`, value: `v${from + i}`, headers: new Map([['n', String(from + i)]])
  }))
  await producer.send({ messages: batch(0) })

  const groupId = `${topic}-group`
  const seenA = Object.assign([], { name: 'a' }); const seenB = Object.assign([], { name: 'b' })
  const a = await member(groupId, seenA)
  const b = await member(groupId, seenB)
  await until('both members to hold a partition', () => assigned(a.consumer) === 1 && assigned(b.consumer) === 1)
  out.assignedBoth = [assigned(a.consumer), assigned(b.consumer)]
  await until('the first 10 records', () => seenA.length + seenB.length >= 10)
  await b.stream.close()
  await b.consumer.close() // leaves the group: its partition moves to a
  await until('a to hold both partitions', () => assigned(a.consumer) === 2)
  await producer.send({ messages: batch(10) })
  await until('the next 10 records at the remaining member', () => seenA.filter((m) => Number(m.n) >= 10).length >= 10)
  const all = [...seenA, ...seenB]
  out.keysAndHeaders = all.every((m) => m.key === `k${m.n}` && m.value === `v${m.n}`)
  out.distinct = new Set(all.map((m) => m.n)).size
  await until('commits to reach the end', async () => {
    const [group] = await admin.listConsumerGroupOffsets({ groups: [groupId] })
    const parts = group.topics.flatMap((t) => t.partitions)
    return parts.reduce((sum, p) => sum + Number(p.committedOffset), 0) === 20
  })
  out.committed = 20
  await a.stream.close()
  await a.consumer.close()
  await producer.close()
  await admin.deleteTopics({ topics: [topic] })
  await until('the topic to be gone', async () => !(await admin.listTopics()).includes(topic), 60000)
  out.deleted = true
  await admin.close()
  console.log(JSON.stringify(out))
}

main().catch((e) => { console.error(e && e.stack ? e.stack : e, e && e.errors); process.exit(1) })
