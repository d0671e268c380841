"""The browser's one HTML page: CSS and the app script, inlined with a nonce (no file but the data chunks is loaded).

Routes are URL hashes (`#latent=N`, `#search=TOKEN`, `#sort=COLUMN`), so the back button walks them and the page
works from file://. Data arrive as `<script src>` chunks that call `window.__interpChunk(id, data)`: file:// blocks
fetch/XHR of local JSON, and the Content-Security-Policy `script-src 'nonce-…' 'strict-dynamic'` lets exactly the
nonce'd app script and the scripts it inserts run (checked in headless Chromium from file://; Chromium also accepts
`'self'` or `file:` there, Firefox treats every file as its own origin, so the page relies on neither). Every
string from data enters the page through textContent or an attribute setter, never as markup.
"""

from __future__ import annotations

import base64
import hashlib
import html

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:12px 24px}header a{color:#9cc4ff}h1{margin:2px 0;font-size:1.25em}
main{padding:14px 24px;max-width:1280px}section{background:#fff;border:1px solid #dfe3ea;border-radius:6px;
padding:10px 16px;margin:0 0 14px}h2{font-size:1.05em;margin:4px 0 8px}table{border-collapse:collapse;font-size:.9em}
td,th{border-bottom:1px solid #e6e9ef;padding:3px 8px;text-align:left}th{background:#f0f2f5;cursor:pointer}
td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#6b7385;font-size:.9em}
.ctx{font-family:ui-monospace,Menlo,monospace;font-size:.85em;margin:2px 0;white-space:pre-wrap;line-height:1.7}
.tok{unicode-bidi:isolate;border-radius:2px;padding:0 1px}.tok.center{outline:1px solid #333}
.val{display:inline-block;width:5em;color:#6b7385}.err{color:#8a1f14}a{color:#1a5fb4}
.cols{display:flex;gap:24px;flex-wrap:wrap}input{font-size:1em;padding:3px 6px}
"""

APP = r"""
(function(){
'use strict';
var cache={}, waiting={}, meta=null, rows=null, state={sort:'id',desc:false,page:0,hits:null,query:''};
var PAGE=100, main=document.getElementById('main'), status=document.getElementById('status');
window.__interpChunk=function(id,data){cache[id]=data;var f=waiting[id]||[];delete waiting[id];
  for(var i=0;i<f.length;i++)f[i](data);};
function load(id,cb){
  if(cache[id]!==undefined){cb(cache[id]);return;}
  if(waiting[id]){waiting[id].push(cb);return;}
  waiting[id]=[cb];var s=document.createElement('script');s.src='data/'+id+'.js';
  s.onerror=function(){status.textContent='missing data file data/'+id+'.js';};
  document.head.appendChild(s);}
function el(tag,props,kids){var e=document.createElement(tag);props=props||{};
  for(var k in props){if(k==='text')e.textContent=props[k];else if(k==='cls')e.className=props[k];
    else if(k==='href')e.setAttribute('href',props[k]);else if(k==='title')e.title=props[k];else e[k]=props[k];}
  (kids||[]).forEach(function(c){if(c!==null&&c!==undefined)e.appendChild(typeof c==='string'?
    document.createTextNode(c):c);});return e;}
function svg(tag,attrs){var e=document.createElementNS('http://www.w3.org/2000/svg',tag);
  for(var k in attrs)e.setAttribute(k,String(attrs[k]));return e;}
function fmt(x,d){if(x===null||x===undefined)return '\u2013';if(Math.abs(x)>0&&Math.abs(x)<1e-3)
  return x.toExponential(2);return Number(x).toFixed(d===undefined?3:d);}
function bars(counts,w,h,shade){var s=svg('svg',{width:w,height:h,viewBox:'0 0 '+w+' '+h,role:'img'});
  var m=Math.max.apply(null,counts.concat([1])),bw=w/counts.length;
  counts.forEach(function(c,i){var bh=c>0?Math.max(1,h*c/m):0;s.appendChild(svg('rect',{x:i*bw,y:h-bh,
    width:Math.max(bw-0.5,0.5),height:bh,fill:shade?shade[i]:'#4a7fd4'}));});return s;}
function key(s){return s.trim().toLowerCase();}
function bucket(s){var h=0x811c9dc5;for(var i=0;i<s.length;i++){h^=s.charCodeAt(i);h=Math.imul(h,16777619)>>>0;}
  return h%meta.n_buckets;}
function pad(n,w){var s=String(n);while(s.length<w)s='0'+s;return s;}
function withIndex(cb){if(rows){cb();return;}var got=0,acc=[];
  for(var c=0;c<meta.n_index_chunks;c++)(function(c){load('index/c'+pad(c,5),function(d){acc[c]=d;got++;
    status.textContent='loaded '+got+' of '+meta.n_index_chunks+' index chunks';
    if(got===meta.n_index_chunks){rows=[];acc.forEach(function(d){for(var i=0;i<d.id.length;i++)rows.push(
      {id:d.id[i],density:d.density[i],mean:d.mean[i],max:d.max[i],top:d.top[i],spark:d.spark[i],
       err:d.err?d.err[i]:null});});status.textContent='';cb();}});})(c);}
function ctxLine(x,vmax){var line=el('div',{cls:'ctx'},[el('span',{cls:'val',text:fmt(x.a[x.c],2)})]);
  x.t.forEach(function(t,i){var a=x.a[i],sp=el('span',{cls:'tok'+(i===x.c?' center':''),text:t,
    title:t+'  '+fmt(a,3)+'  (seq '+x.seq+', pos '+(x.pos+i-x.c)+')'});
    if(a!==0&&vmax>0){var f=Math.min(1,Math.abs(a)/vmax);sp.style.backgroundColor=a>0?
      'rgba(255,140,0,'+f.toFixed(3)+')':'rgba(60,120,220,'+f.toFixed(3)+')';}line.appendChild(sp);});
  return line;}
function renderIndex(){
  main.textContent='';var form=el('form',{id:'search-form'});var inp=el('input',{id:'search',type:'search',
    placeholder:'token, e.g. she',value:state.query});
  form.appendChild(el('label',{},['Search latents by a token of their top contexts: ',inp]));
  form.appendChild(el('button',{type:'submit',text:'search'}));
  form.onsubmit=function(e){e.preventDefault();location.hash=inp.value?'search='+encodeURIComponent(inp.value):'';};
  var sec=el('section',{},[form]);main.appendChild(sec);
  var hit={};(state.hits||[]).forEach(function(j){hit[j]=1;});
  var list=state.hits===null?rows:rows.filter(function(r){return hit[r.id]===1;});
  var k=state.sort,sign=state.desc?-1:1;list=list.slice().sort(function(a,b){var x=a[k],y=b[k];
    if(x===null||x===undefined)x=-Infinity;if(y===null||y===undefined)y=-Infinity;
    return x<y?-sign:x>y?sign:a.id-b.id;});
  var info=state.hits===null?list.length+' latents':list.length+' latents whose top contexts contain \u201c'+
    state.query+'\u201d';sec.appendChild(el('p',{cls:'muted',id:'count',text:info}));
  var cols=[['id','latent'],['density','density'],['mean','mean act.'],['max','max act.'],['top','top token'],
    ['spark','histogram']];if(meta.has_err)cols.push(['err','r(err)']);
  var thead=el('tr');cols.forEach(function(c){var th=el('th',{text:c[1]+(state.sort===c[0]?(state.desc?' \u25bc':
    ' \u25b2'):'')});th.setAttribute('data-col',c[0]);if(c[0]!=='spark')th.onclick=function(){
    location.hash='sort='+c[0]+(state.sort===c[0]&&!state.desc?'&desc=1':'')+(state.query?'&search='+
    encodeURIComponent(state.query):'');};thead.appendChild(th);});
  var tb=el('tbody'),p0=state.page*PAGE;list.slice(p0,p0+PAGE).forEach(function(r){
    var a=el('a',{href:'#latent='+r.id,text:'#'+r.id});tb.appendChild(el('tr',{},[el('td',{},[a]),
      el('td',{cls:'num',text:fmt(r.density,5)}),el('td',{cls:'num',text:fmt(r.mean)}),
      el('td',{cls:'num',text:fmt(r.max)}),el('td',{cls:'tok',text:r.top}),el('td',{},[bars(r.spark,80,18)])].concat(
      meta.has_err?[el('td',{cls:'num',text:fmt(r.err)})]:[])));});
  sec.appendChild(el('table',{id:'latent-table'},[el('thead',{},[thead]),tb]));
  var nav=el('p');if(state.page>0){var pv=el('button',{text:'previous'});pv.onclick=function(){state.page--;
    renderIndex();};nav.appendChild(pv);}if(p0+PAGE<list.length){var nx=el('button',{text:'next',id:'next'});
    nx.onclick=function(){state.page++;renderIndex();};nav.appendChild(nx);}sec.appendChild(nav);}
function section(title,kids){return el('section',{},[el('h2',{text:title})].concat(kids));}
function renderLatent(j){load('latents/c'+pad(Math.floor(j/meta.latent_chunk),5),function(d){
  var L=d[String(j)];main.textContent='';var back=el('a',{href:'#',id:'back',text:'\u2190 all latents'});
  main.appendChild(el('p',{},[back]));
  if(!L){main.appendChild(el('p',{cls:'err',text:'no latent '+j}));return;}
  main.appendChild(section('Latent #'+j,[el('p',{id:'stats',text:'density '+fmt(L.density,5)+' ('+L.count+
    ' of '+meta.n_rows+' tokens) \u00b7 mean '+fmt(L.mean)+' \u00b7 max '+fmt(L.max)+(L.err_corr===null?'':
    ' \u00b7 correlation with '+(meta.err_label||'the SAE-error norm')+' '+fmt(L.err_corr))})].concat(
    L.err_corr===null&&meta.err_note?[el('p',{cls:'muted',text:meta.err_note})]:[])));
  var nb=L.hist.counts.length,shade=L.hist.qbin.map(function(q){return q%2?'#4a7fd4':'#8fb3ea';});
  main.appendChild(section('Activation histogram',[bars(L.hist.counts,640,120,shade),el('p',{cls:'muted',
    text:nb+' bins on ['+fmt(L.hist.lo)+', '+fmt(L.hist.hi)+']; shading alternates by activation-quantile bin'})]));
  main.appendChild(section('Top activations',L.top.length?L.top.map(function(x){return ctxLine(x,L.max);}):
    [el('p',{cls:'muted',text:'never fires'})]));
  var qs=[];L.quantiles.forEach(function(q,i){if(!q.samples.length)return;qs.push(el('h3',{text:'quantile bin '+
    (i+1)+' of '+L.quantiles.length+': activations '+fmt(q.lo)+' \u2013 '+fmt(q.hi)+' ('+q.n+' tokens)'}));
    q.samples.forEach(function(x){qs.push(ctxLine(x,L.max));});});
  main.appendChild(section('Quantile samples',qs.length?qs:[el('p',{cls:'muted',text:'none'})]));
  var cols=[];if(L.logits){[['pos','Top positive logit effects'],['neg','Top negative logit effects']].forEach(
    function(p){var tb=el('tbody');L.logits[p[0]].forEach(function(e){tb.appendChild(el('tr',{},[el('td',
      {cls:'tok',text:e[0]}),el('td',{cls:'num',text:fmt(e[1])})]));});cols.push(el('div',{},[el('h3',
      {text:p[1]}),el('table',{cls:'logits-'+p[0]},[tb])]));});}
  else cols.push(el('p',{cls:'muted',text:meta.logit_note||'no unembedding'}));
  var nt=el('tbody');L.neighbours.forEach(function(e){nt.appendChild(el('tr',{},[el('td',{},[el('a',
    {href:'#latent='+e[0],text:'#'+e[0]})]),el('td',{cls:'num',text:fmt(e[1])})]));});
  cols.push(el('div',{},[el('h3',{text:'Nearest latents (decoder cosine)'}),el('table',{id:'neighbours'},[nt])]));
  main.appendChild(section('Weights',[el('div',{cls:'cols'},cols)]));window.scrollTo(0,0);});}
function route(){var h=location.hash.replace(/^#/,''),p={};h.split('&').forEach(function(kv){if(!kv)return;
  var i=kv.indexOf('=');p[decodeURIComponent(i<0?kv:kv.slice(0,i))]=i<0?'':decodeURIComponent(kv.slice(i+1));});
  if(p.latent!==undefined){var j=parseInt(p.latent,10);if(isFinite(j))return renderLatent(j);}
  state.sort=p.sort||'id';state.desc=p.desc==='1';state.page=0;state.query=p.search||'';
  withIndex(function(){if(!state.query){state.hits=null;renderIndex();return;}
    var q=key(state.query);load('search/b'+pad(bucket(q),3),function(d){state.hits=d[q]||[];renderIndex();});});}
load('meta',function(m){meta=m;document.getElementById('title').textContent=m.title;
  document.getElementById('sub').textContent=m.subtitle;window.addEventListener('hashchange',route);route();});
})();
"""


def page(nonce_seed: str) -> str:
    """The site's index.html (everything inline; its nonce is a hash of the page's own code)."""
    nonce = base64.urlsafe_b64encode(hashlib.sha256((nonce_seed + APP + CSS).encode()).digest()[:18]).decode()
    policy = (f"default-src 'none'; script-src 'nonce-{nonce}' 'strict-dynamic'; style-src 'nonce-{nonce}'; "
              "img-src data:; connect-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{html.escape(policy)}\">"
            "<meta name='generator' content='interp browse'><title>latent browser</title>"
            f"<style nonce='{nonce}'>{CSS}</style></head><body><header><h1 id='title'>latent browser</h1>"
            "<div id='sub' class='muted'></div></header><main id='main'><p>loading…</p></main>"
            "<p id='status' class='muted'></p>"
            f"<script nonce='{nonce}'>{APP}</script></body></html>\n")
