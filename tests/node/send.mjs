// Sends what a product app sends through Segment's Node SDK, pointed at a churnwatch API:
// node send.mjs <api url> <write key> <account>. Exits 1, printing the errors, if the SDK reported any.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, account] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, flushAt: 20, flushInterval: 200, maxRetries: 3 })
const errors = []
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.code ?? err)))
const context = { groupId: account }
analytics.group({ userId: 'u1', groupId: account, traits: { name: `${account} Inc`, plan: 'pro' } })
for (let i = 0; i < 3; i++) {
  analytics.track({ userId: `u${i % 2}`, event: 'Report Exported', properties: { n: i }, context })
}
analytics.page({ userId: 'u1', name: 'Pricing', context })
analytics.identify({ userId: 'u2', traits: { email: 'u2@example.com' }, context })
// No group id anywhere: churnwatch cannot attribute it, and says so without failing the batch.
analytics.track({ userId: 'u9', event: 'Orphan' })
await analytics.closeAndFlush({ timeout: 15000 })
if (errors.length) {
  console.error(JSON.stringify(errors))
  process.exit(1)
}
