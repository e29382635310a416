// kafkajs against Floe: admin, configs, keyed produce with headers, a group of two with a member leaving.
// Prints one JSON line of what it saw; tests/polyglot asserts on it. Usage: node kafkajs_scenario.js HOST:PORT TOPIC
'use strict'
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs')

const [bootstrap, topic] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'floe-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING })
const deadline = (ms) => Date.now() + ms

async function until (what, predicate, ms = 120000) {
  const end = deadline(ms)
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function describe (admin, type, name) {
  const { resources } = await admin.describeConfigs({ resources: [{ type, name }], includeSynonyms: false })
  return Object.fromEntries(resources[0].configEntries.map((e) => [e.configName, e]))
}

function member (groupId, seen, assigned) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500, rebalanceTimeout: 20000 })
  consumer.on(consumer.events.GROUP_JOIN, (e) => { assigned.push(Object.values(e.payload.memberAssignment).flat().length) })
  return {
    consumer,
    async start () {
      await consumer.connect()
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({
        autoCommitInterval: 200,
        eachMessage: async ({ message }) => {
          seen.push({ key: message.key.toString(), value: message.value.toString(), n: message.headers.n?.toString() })
        }
      })
    }
  }
}

async function main () {
  const out = {}
  const admin = kafka.admin()
  await admin.connect()
  out.created = await admin.createTopics({
    topics: [{ topic, numPartitions: 2, configEntries: [{ name: 'retention.ms', value: '3600000' }] }]
  })
  out.listed = (await admin.listTopics()).includes(topic)
  let configs = await describe(admin, ConfigResourceTypes.TOPIC, topic)
  out.configCount = Object.keys(configs).length
  out.retention = configs['retention.ms'].configValue
  out.retentionSource = configs['retention.ms'].configSource
  const { brokers } = await admin.describeCluster()
  const broker = await describe(admin, ConfigResourceTypes.BROKER, String(brokers[0].nodeId))
  out.advertised = broker['advertised.listeners']?.configValue
  out.numPartitions = broker['num.partitions']?.configValue
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '7200000' }] }]
  })
  configs = await describe(admin, ConfigResourceTypes.TOPIC, topic)
  out.altered = configs['retention.ms'].configValue
  try {
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'bogus.config', value: '1' }] }]
    })
    out.bogusError = null
  } catch (e) {
    out.bogusError = `${e.type || ''} ${e.message}`
  }

  const producer = kafka.producer()
  await producer.connect()
  const batch = (from) => Array.from({ length: 10 }, (_, i) => ({ key: `k${from + i}`, value: `v${from + i}`, headers: { n: String(from + i) } }))
  await producer.send({ topic, messages: batch(0) })

  const groupId = `${topic}-group`
  const seenA = []; const seenB = []; const assignedA = []; const assignedB = []
  const a = member(groupId, seenA, assignedA)
  const b = member(groupId, seenB, assignedB)
  await a.start()
  await b.start()
  await until('both members to hold a partition', () => assignedA.at(-1) === 1 && assignedB.at(-1) === 1)
  await until('the first 10 records', () => seenA.length + seenB.length >= 10)
  out.assignedBoth = [assignedA.at(-1), assignedB.at(-1)]
  await b.consumer.disconnect() // leaves the group: its partition moves to a
  await until('a to hold both partitions', () => assignedA.at(-1) === 2)
  await producer.send({ topic, messages: batch(10) })
  await until('the next 10 records at the remaining member', () => seenA.filter((m) => Number(m.n) >= 10).length >= 10)
  const all = [...seenA, ...seenB]
  out.keysAndHeaders = all.every((m) => m.key === `k${m.n}` && m.value === `v${m.n}`)
  out.distinct = new Set(all.map((m) => m.n)).size
  await until('commits to reach the end', async () => {
    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] })
    return offsets[0].partitions.reduce((sum, p) => sum + Number(p.offset), 0) === 20
  })
  out.committed = 20
  await a.consumer.disconnect()
  await producer.disconnect()
  await admin.deleteTopics({ topics: [topic] })
  await until('the topic to be gone', async () => !(await admin.listTopics()).includes(topic), 60000)
  out.deleted = true
  await admin.disconnect()
  console.log(JSON.stringify(out))
}

main().catch((e) => { console.error(e && e.stack ? e.stack : e); process.exit(1) })
