// Sends what a product app sends through Segment's Node SDK, pointed at a churnwatch API:
// node send.mjs <api url> <write key> <account>. Exits 1, printing the errors, if the SDK reported any.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, account] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, flushAt: 20, flushInterval: 200, maxRetries: 3 })
const errors = []
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.code ?? err)))
// Group calls, then tracks and a page naming only their user (as most apps send them), one with
// context.groupId, an identify naming the account in its traits, a user no group call names, and a
// track the API refuses.
const [u0, u1, u2] = [0, 1, 2].map((i) => `${account}-u${i}`)
for (const userId of [u0, u1]) {
  analytics.group({ userId, groupId: account, traits: { name: `${account} Inc`, plan: 'pro' } })
}
analytics.track({ userId: u0, event: 'Report Exported', properties: { n: 0 } })
analytics.track({ userId: u1, event: 'Report Exported', properties: { n: 1 } })
analytics.track({ userId: u1, event: 'Report Exported', properties: { n: 2 }, context: { groupId: account } })
analytics.page({ userId: u1, name: 'Pricing' })
analytics.identify({ userId: u2, traits: { email: 'u2@example.com', groupId: account } })
analytics.track({ userId: `orphan-${account}`, event: 'Orphan' })
// Invalid (dated a day ahead): refused on its own in the batch's answer, the rest stored.
const ahead = new Date(Date.now() + 86_400_000)
analytics.track({ userId: u1, event: 'From The Future', timestamp: ahead, context: { groupId: account } })
await analytics.closeAndFlush({ timeout: 15000 })
if (errors.length) {
  console.error(JSON.stringify(errors))
  process.exit(1)
}
